"""Real cases loaded as MRML volume nodes for the bridge's placement tests (test_slicer_placement.py,
test_slicer_orientation.py): plain or under a rotation transform, and the voxel axis closest to a view's normal in
world space."""

from __future__ import annotations

import numpy as np

from slicer_scene import add_linear_transform, load_volume_node, new_scene, world_of_voxel

from cases import _rotation
from oracle import ground_truth_volume
from placement import normal_ijk_axis


def rotation_matrix(degrees: float = 25.0) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = _rotation(np.array([0.3, 1.0, 0.4]), degrees)
    matrix[:3, 3] = [12.0, -7.0, 30.0]
    return matrix


def world_normal_axis(volume_node, axis: str) -> int:
    """The voxel axis closest to the view's normal in world space (node matrix and parent transform)."""
    origin = world_of_voxel(volume_node, (0, 0, 0))
    world_matrix = np.eye(4)
    for a in range(3):
        step = np.zeros(3)
        step[a] = 1
        world_matrix[:3, a] = world_of_voxel(volume_node, step) - origin
    return normal_ijk_axis(world_matrix, axis)


def scene_with(case, tmp_path, transformed: bool):
    scene = new_scene()
    node = load_volume_node(scene, ground_truth_volume(case.volume, case.mask), tmp_path)
    transform = None
    if transformed:
        transform = add_linear_transform(scene, rotation_matrix())
        node.SetAndObserveTransformNodeID(transform.GetID())
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    return scene, node, segmentation, transform
