"""A click in a Slicer slice view puts the segment on the side of the object that view shows: the sided stand-in
(see tests/engine/interaction/test_orientation_placement.py) fails any flipped, mirrored or transposed picture
between the scene and the model, on every view, for volumes with negative direction cosines and under a
rotation transform."""

from __future__ import annotations

import numpy as np
import pytest

from slicer_scene import add_points, add_slice_node, world_of_voxel

from medsam3.interaction.engine import SegmentationEngine
from medsam3.model.sided_region_model import SidedRegionModel
from medsam3.transports.backend import BackendInfo, LocalBackend

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.segment_io import segment_mask

from cases import VARIANTS, load_case
from sided import sided_expectation
from placement import click_in_object, dice
from sided import SIDED_DICE
from slicer_placed_cases import scene_with, world_normal_axis

GEOMETRIES = [("brats_tumour", "original", False), ("spleen", "flipped", False), ("liver", "oblique", False),
              ("brats_tumour", "original", True)]


def world_matrix(volume_node) -> np.ndarray:
    """Voxel to world (node matrix and parent transform), measured from the scene."""
    matrix = np.eye(4)
    matrix[:3, 3] = world_of_voxel(volume_node, (0, 0, 0))
    for a in range(3):
        step = np.zeros(3)
        step[a] = 1
        matrix[:3, a] = world_of_voxel(volume_node, step) - matrix[:3, 3]
    return matrix


@pytest.mark.parametrize("case_name,variant,transformed", GEOMETRIES,
                         ids=[f"{c}-{v}" + ("-under-rotation" if t else "") for c, v, t in GEOMETRIES])
@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_click_in_a_view_keeps_the_side_that_view_shows(case_name, variant, transformed, axis, tmp_path):
    case = VARIANTS[variant](load_case(case_name))
    scene, node, segmentation, _ = scene_with(case, tmp_path, transformed)
    ijk, region = click_in_object(case.mask, world_normal_axis(node, axis))
    click_world = world_of_voxel(node, ijk)
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(SidedRegionModel()),
                                                BackendInfo(model="sided-bright-region", device="cpu", image_size=1008)))

    result = logic.segment(node, segmentation, positive_points=add_points(scene, click_world),
                           view=add_slice_node(scene, axis, click_world), whole_volume=False)

    expected = sided_expectation(region, world_matrix(node), axis, ijk)
    assert dice(segment_mask(segmentation, result.segment_ids[0], node), expected) >= SIDED_DICE
