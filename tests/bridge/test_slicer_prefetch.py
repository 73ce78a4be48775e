"""Scrolling a slice view encodes the slices around it in the background: the next clicks there cost no encoding."""

import numpy as np

from slicer_scene import add_points, add_slice_node, load_volume_node, new_scene, world_of_voxel

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.interaction.engine import SegmentationEngine

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.segment_io import segment_mask

from cases import load_case
from oracle import GroundTruthOracle, ground_truth_volume
from placement import dice


def test_slices_around_the_view_are_ready_before_the_click(tmp_path):
    case = load_case("spleen")
    scene = new_scene()
    volume_node = load_volume_node(scene, ground_truth_volume(case.volume, case.mask), tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    oracle = GroundTruthOracle()
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(oracle), BackendInfo("oracle", "cpu", 1008)))
    k = int(np.argmax(case.mask.sum(axis=(1, 2))))
    j, i = np.argwhere(case.mask[k + 1])[len(np.argwhere(case.mask[k + 1])) // 2]
    red = add_slice_node(scene, "axial", world_of_voxel(volume_node, (i, j, k)))
    try:
        assert logic.prefetch_around(volume_node, red, text="spleen")
        assert logic.wait_for_prefetch(timeout=120)
        assert oracle.encoded == 5  # slices k-2 .. k+2

        clicks = add_points(scene, [world_of_voxel(volume_node, (i, j, k + 1))])
        result = logic.segment(volume_node, segmentation, text="spleen", positive_points=clicks, view=red,
                               whole_volume=False)

        assert oracle.encoded == 5  # the click on slice k+1 decoded from the prefetched encoding
        expected = np.zeros_like(case.mask)
        expected[k + 1] = case.mask[k + 1]
        assert dice(segment_mask(segmentation, result.segment_ids[0], volume_node), expected) >= 0.95
    finally:
        logic.close()
