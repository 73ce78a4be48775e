"""Saving and reloading a scene, and reloading the module, mid-session (issue 17, Low and user journeys): the
module's prompt markups are never saved with the scene, so a reloaded scene brings back neither stale clicks nor
a second set of prompt nodes; a new logic object on the same scene goes on from the segments there."""

from __future__ import annotations

import numpy as np

from slicer_scene import add_points, new_scene, world_of_voxel

from MedicalSAM3SlicerLib.prompt_nodes import POLARITY_ATTRIBUTE, prompt_node
from MedicalSAM3SlicerLib.segment_io import segment_mask

from slicer_patients import A_BOX, GroundTruthOracle, box_mask, load_patient, logic_with


def markups_count(scene) -> int:
    return scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode")


def save_and_reload(scene, path):
    scene.SetURL(str(path))
    assert scene.Commit()
    scene.Clear(0)
    scene.SetURL(str(path))
    assert scene.Connect()


def test_journey_save_the_scene_with_prompts_in_it_reload_it_and_go_on(tmp_path):
    scene = new_scene()
    logic = logic_with(GroundTruthOracle())
    volume, segmentation, centre = load_patient(scene, tmp_path / "a", A_BOX, "patient")
    clicks = prompt_node(scene, "positive")
    clicks.AddControlPointWorld(*[float(v) for v in world_of_voxel(volume, centre)])
    prompt_node(scene, "box")
    logic.segment(volume, segmentation, positive_points=clicks, view="axial", whole_volume=False)
    assert clicks.GetNumberOfControlPoints() == 1  # placed, still on the views when the user saves

    save_and_reload(scene, tmp_path / "scene.mrml")
    logic.close()  # the module does this when the scene closes

    assert markups_count(scene) == 0  # no stale prompts came back
    volume = scene.GetFirstNodeByName("patient")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "after reload")
    clicks = prompt_node(scene, "positive")
    assert clicks.GetNumberOfControlPoints() == 0 and markups_count(scene) == 1
    clicks.AddControlPointWorld(*[float(v) for v in world_of_voxel(volume, centre)])
    result = logic.segment(volume, segmentation, positive_points=clicks, view="axial", whole_volume=False)
    found = segment_mask(segmentation, result.segment_ids[0], volume)
    np.testing.assert_array_equal(found[centre[2]], box_mask(*A_BOX)[centre[2]])  # the reloaded volume, segmented

def test_prompt_nodes_saved_by_an_earlier_version_are_adopted_emptied_not_duplicated(tmp_path):
    scene = new_scene()
    load_patient(scene, tmp_path / "a", A_BOX, "patient")
    old = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "MedicalSAM3 positive")  # as earlier versions made it
    old.SetAttribute(POLARITY_ATTRIBUTE, "positive")
    old.AddControlPointWorld(10.0, 10.0, 6.0)
    save_and_reload(scene, tmp_path / "old.mrml")
    assert markups_count(scene) == 1

    node = prompt_node(scene, "positive")

    assert markups_count(scene) == 1 and node.GetName() == "MedicalSAM3 positive"
    assert node.GetNumberOfControlPoints() == 0 and not node.GetSaveWithScene()
    assert prompt_node(scene, "positive", node) is node


def test_journey_reload_the_module_mid_session_and_refine_a_segment_of_the_earlier_logic(tmp_path):
    """Reload (developer mode) makes a new widget and a new logic on the same scene: a segment the first logic made
    is refined from its current voxels, and undo returns to them exactly."""
    scene = new_scene()
    first = logic_with(GroundTruthOracle())
    volume, segmentation, centre = load_patient(scene, tmp_path / "a", A_BOX, "patient")
    segment_id = first.segment(volume, segmentation, positive_points=add_points(scene, world_of_voxel(volume, centre)),
                               view="axial", whole_volume=False).segment_ids[0]
    before = segment_mask(segmentation, segment_id, volume)
    first.close()  # the old widget's cleanup()

    second = logic_with(GroundTruthOracle())
    other_slice = [centre[0], centre[1], A_BOX[0][2]]
    second.segment(volume, segmentation, positive_points=add_points(scene, world_of_voxel(volume, other_slice)),
                   view="axial", whole_volume=False, segment_id=segment_id)

    now = segment_mask(segmentation, segment_id, volume)
    expected = before.copy()
    expected[other_slice[2]] = box_mask(*A_BOX)[other_slice[2]]
    np.testing.assert_array_equal(now, expected)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    second.undo(volume, segmentation, segment_id)
    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, volume), before)
