"""The Slicer logic works the same through the remote transport: the same clicks and text give the same voxels
from a server as in-process, and undo works across the wire."""

from __future__ import annotations

import numpy as np

from slicer_scene import add_points, load_volume_node, new_scene, world_of_voxel

from medsam3.transports.remote_client import RemoteBackend

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.segment_io import segment_mask

from cases import load_case
from oracle import ground_truth_volume
from server_harness import API_KEY, running_server
from placement import click_in_object
from slicer_oracle import oracle_logic


def _session_steps(logic, tmp_path, name):
    """Click (whole volume), refine on one slice with a negative click, type a target, undo the refinement."""
    case = load_case("spleen")
    scene = new_scene()
    node = load_volume_node(scene, ground_truth_volume(case.volume, case.mask), tmp_path, name)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    ijk, _ = click_in_object(case.mask, 2)
    clicks = add_points(scene, world_of_voxel(node, ijk))
    negative = add_points(scene, world_of_voxel(node, ijk), name="negative")
    masks = []
    clicked = logic.segment(node, segmentation, positive_points=clicks, view="axial").segment_ids[0]
    masks.append(segment_mask(segmentation, clicked, node))
    logic.segment(node, segmentation, negative_points=negative, view="axial", whole_volume=False, segment_id=clicked)
    masks.append(segment_mask(segmentation, clicked, node))
    typed = logic.segment(node, segmentation, text="spleen").segment_ids[0]
    masks.append(segment_mask(segmentation, typed, node))
    logic.undo(node, segmentation, clicked)
    masks.append(segment_mask(segmentation, clicked, node))
    return masks


def test_remote_segments_equal_in_process_segments(tmp_path):
    local = _session_steps(oracle_logic(), tmp_path, "local")
    with running_server() as url:
        remote = _session_steps(MedicalSAM3SlicerLogic(RemoteBackend(url, API_KEY)), tmp_path, "remote")
    assert local[0].any() and local[1].sum() < local[0].sum() and local[2].any()  # each step did something
    for step, (expected, got) in enumerate(zip(local, remote)):
        np.testing.assert_array_equal(got, expected, err_msg=f"step {step}")
    np.testing.assert_array_equal(remote[3], remote[0])  # undo restored the propagated segment exactly
