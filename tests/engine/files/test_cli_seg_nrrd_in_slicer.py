"""The .seg.nrrd the command line writes without Slicer loads in Slicer's own segmentation reader (slicer-core)
with the segment names, colours and voxels it was written with, on plain and oblique volume geometries."""

from __future__ import annotations

import numpy as np
import pytest

from slicer_scene import load_volume_node, new_scene  # skips this file when slicer-core is missing

from medsam3.files.seg_nrrd import write_seg_nrrd
from medsam3.files.segment_colours import segment_colour

from cases import VARIANTS, load_case
from MedicalSAM3SlicerLib.segment_io import segment_mask


@pytest.mark.parametrize("variant", ["original", "oblique"])
def test_slicer_reads_the_written_segments_back(variant, tmp_path):
    case = VARIANTS[variant](load_case("spleen"))
    labels = np.zeros(case.volume.array.shape, np.uint8)
    labels[case.mask] = 1
    second = np.zeros_like(case.mask)
    second[2:5, 10:30, 20:40] = True
    labels[second & ~case.mask] = 2
    names = ["spleen", "left kidney", "nothing found"]  # the third segment is empty
    path = write_seg_nrrd(tmp_path / "result.seg.nrrd", labels, names, case.volume)

    scene = new_scene()
    volume_node = load_volume_node(scene, case.volume, tmp_path)
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(loaded)

    segmentation = loaded.GetSegmentation()
    assert [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())] == names
    for value, name in enumerate(names, start=1):
        segment_id = segmentation.GetSegmentIdBySegmentName(name)
        np.testing.assert_array_equal(segment_mask(loaded, segment_id, volume_node), labels == value)
        colour = np.array(segmentation.GetSegment(segment_id).GetColor())
        np.testing.assert_allclose(colour, np.array(segment_colour(value - 1)) / 255, atol=1e-3)
