"""Clicks and boxes placed in Slicer's world coordinates give segments exactly on the object: every slice view,
flipped / oblique volumes, volumes under a rotation transform (ground-truth oracle standing in for the model)."""

from __future__ import annotations

import numpy as np
import pytest

from slicer_scene import add_linear_transform, add_points, add_roi, add_slice_node, new_scene, voxels_of, world_of_voxel

from MedicalSAM3SlicerLib.segment_io import segment_mask

from cases import VARIANTS, load_case
from placement import click_in_object, dice, placement_dice
from slicer_oracle import oracle_logic
from slicer_placed_cases import scene_with, world_normal_axis

CASES = ["spleen", "liver", "brats_tumour"]


# every stored geometry plain, and the original one also under a rotation transform
GEOMETRIES = [(variant, False) for variant in VARIANTS] + [("original", True)]


@pytest.mark.parametrize("variant,transformed", GEOMETRIES,
                         ids=[v + ("-under-rotation" if t else "") for v, t in GEOMETRIES])
@pytest.mark.parametrize("case_name", CASES)
@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_click_in_a_slice_view_segments_the_object_on_that_slice(case_name, variant, transformed, axis, tmp_path):
    case = VARIANTS[variant](load_case(case_name))
    scene, node, segmentation, _ = scene_with(case, tmp_path, transformed)
    ijk, expected = click_in_object(case.mask, world_normal_axis(node, axis))
    click_world = world_of_voxel(node, ijk)
    clicks = add_points(scene, click_world)
    view = add_slice_node(scene, axis, click_world)

    result = oracle_logic().segment(node, segmentation, positive_points=clicks, view=view, whole_volume=False)

    assert dice(segment_mask(segmentation, result.segment_ids[0], node), expected) >= placement_dice(case_name, axis)


@pytest.mark.parametrize("case_name,transformed", [("spleen", False), ("spleen", True), ("liver", False),
                                                    ("brats_tumour", True)])
def test_one_click_propagates_to_the_whole_object(case_name, transformed, tmp_path):
    case = load_case(case_name)
    scene, node, segmentation, transform = scene_with(case, tmp_path, transformed)
    ijk, _ = click_in_object(case.mask, world_normal_axis(node, "axial"))
    # markups under the same transform as the volume, given in world coordinates
    clicks = add_points(scene, world_of_voxel(node, ijk), transform_node=transform)
    before = voxels_of(node)

    result = oracle_logic().segment(node, segmentation, text="spleen" if case_name == "spleen" else None,
                                    positive_points=clicks, view="axial", whole_volume=True)

    # the oracle only finds the connected object under the click: compare with that part of the ground truth
    from scipy import ndimage
    labels, _ = ndimage.label(case.mask)
    k, j, i = (int(round(v)) for v in ijk[::-1])
    reachable = labels == labels[k, j, i]
    assert dice(segment_mask(segmentation, result.segment_ids[0], node), reachable) >= 0.999
    np.testing.assert_array_equal(voxels_of(node), before)  # the source volume is untouched


@pytest.mark.parametrize("variant", ["original", "flipped"])
def test_box_drawn_in_world_coordinates_segments_the_object(variant, tmp_path):
    case = VARIANTS[variant](load_case("liver"))
    scene, node, segmentation, _ = scene_with(case, tmp_path, transformed=False)
    ijk, expected = click_in_object(case.mask, world_normal_axis(node, "coronal"))
    voxels = np.argwhere(expected)[:, ::-1]  # (i, j, k)
    corners_world = np.array([world_of_voxel(node, v) for v in (voxels.min(axis=0), voxels.max(axis=0))])
    box = add_roi(scene, corners_world.min(axis=0) - 0.1, corners_world.max(axis=0) + 0.1)

    result = oracle_logic().segment(node, segmentation, roi=box, view="coronal", whole_volume=False)

    assert dice(segment_mask(segmentation, result.segment_ids[0], node), expected) >= 0.999


def test_a_click_is_attributed_to_the_view_it_was_placed_in(tmp_path):
    from MedicalSAM3SlicerLib.prompt_nodes import slice_node_showing

    scene = new_scene()
    views = {axis: add_slice_node(scene, axis, (10.0, 20.0, 30.0)) for axis in ("axial", "coronal", "sagittal")}
    views["coronal"].JumpSlice(10.0, 55.0, 30.0)  # the coronal view moved to another plane
    views["sagittal"].JumpSlice(-40.0, 55.0, 30.0)
    assert slice_node_showing((10.0, 55.0, -80.0), views.values()) is views["coronal"]
    assert slice_node_showing((-40.0, 0.0, 0.0), views.values()) is views["sagittal"]
    assert slice_node_showing((0.0, 0.0, 30.0), views.values()) is views["axial"]


@pytest.mark.parametrize("mistake", ["ignore-parent-transform", "ignore-view-orientation"])
def test_placement_check_catches_bridge_geometry_mistakes(monkeypatch, mistake, tmp_path):
    """Sanity of the tests above: each classic MRML-to-voxel mistake makes the Dice fail."""
    from MedicalSAM3SlicerLib import prompt_nodes, volume_nodes

    if mistake == "ignore-parent-transform":
        monkeypatch.setattr(volume_nodes, "parent_to_world", lambda node: np.eye(4))
    else:
        monkeypatch.setattr(prompt_nodes, "axis_from_slice_node", lambda volume, view: "axial")
    case = load_case("liver")
    scene, node, segmentation, _ = scene_with(case, tmp_path, transformed=mistake == "ignore-parent-transform")
    axis = "sagittal" if mistake == "ignore-view-orientation" else "axial"
    ijk, expected = click_in_object(case.mask, world_normal_axis(node, axis))
    click_world = world_of_voxel(node, ijk)
    clicks = add_points(scene, click_world)
    try:
        result = oracle_logic().segment(node, segmentation, positive_points=clicks,
                                        view=add_slice_node(scene, axis, click_world), whole_volume=False)
        found = segment_mask(segmentation, result.segment_ids[0], node)
    except Exception:  # a mistake may also put the click outside the volume: equally caught
        found = np.zeros_like(expected)
    assert dice(found, expected) < 0.95


def test_clicks_under_their_own_transform_are_taken_in_world_coordinates(tmp_path):
    case = load_case("spleen")
    scene, node, segmentation, _ = scene_with(case, tmp_path, transformed=True)
    ijk, expected = click_in_object(case.mask, world_normal_axis(node, "axial"))
    shift = np.eye(4)
    shift[:3, 3] = [40.0, -25.0, 12.0]
    clicks = add_points(scene, world_of_voxel(node, ijk), transform_node=add_linear_transform(scene, shift, "shift"))

    result = oracle_logic().segment(node, segmentation, positive_points=clicks, view="axial", whole_volume=False)

    assert dice(segment_mask(segmentation, result.segment_ids[0], node), expected) >= 0.999
    assert segmentation.GetTransformNodeID() == node.GetTransformNodeID()  # the segments move with the volume


def test_click_in_a_view_rotated_to_an_oblique_volume(tmp_path):
    """'Rotate to volume plane': the view's plane is a voxel plane of the oblique volume, not an anatomical one."""
    from MedicalSAM3SlicerLib.volume_nodes import array_to_matrix, world_ijk_to_ras

    case = VARIANTS["oblique"](load_case("spleen"))
    scene, node, segmentation, _ = scene_with(case, tmp_path, transformed=False)
    directions = world_ijk_to_ras(node)[:3, :3] / np.linalg.norm(world_ijk_to_ras(node)[:3, :3], axis=0)
    for normal_axis in range(3):
        ijk, expected = click_in_object(case.mask, normal_axis)
        click_world = world_of_voxel(node, ijk)
        view = add_slice_node(scene, "axial", click_world)
        in_plane = [a for a in range(3) if a != normal_axis]
        slice_to_ras = np.eye(4)
        slice_to_ras[:3, 0], slice_to_ras[:3, 1] = directions[:, in_plane[0]], directions[:, in_plane[1]]
        slice_to_ras[:3, 2] = np.cross(slice_to_ras[:3, 0], slice_to_ras[:3, 1])
        slice_to_ras[:3, 3] = click_world
        view.GetSliceToRAS().DeepCopy(array_to_matrix(slice_to_ras))
        view.UpdateMatrices()
        clicks = add_points(scene, click_world, name=f"clicks{normal_axis}")

        result = oracle_logic().segment(node, segmentation, positive_points=clicks, view=view, whole_volume=False)

        assert dice(segment_mask(segmentation, result.segment_ids[0], node), expected) >= 0.999
