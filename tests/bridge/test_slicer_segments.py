"""What the user keeps: other segments, hand-drawn voxels, the source volume; exact undo; named, coded segments."""

from __future__ import annotations

import numpy as np
import pytest
import vtk

from slicer_scene import add_points, add_slice_node, load_volume_node, new_scene, slicer, voxels_of, world_of_voxel

from medsam3.errors import PromptError, VolumeError
from medsam3.interaction.session import MaskUpdate

from MedicalSAM3SlicerLib.segment_io import apply_update, segment_mask
from MedicalSAM3SlicerLib.terminology import segment_tag
from MedicalSAM3SlicerLib.volume_nodes import local_ijk_to_ras

from cases import load_case
from oracle import ground_truth_volume
from placement import click_in_object, dice
from slicer_oracle import oracle_logic


@pytest.fixture
def spleen_scene(tmp_path):
    case = load_case("spleen")
    scene = new_scene()
    node = load_volume_node(scene, ground_truth_volume(case.volume, case.mask), tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    ijk, expected = click_in_object(case.mask, 2)
    clicks = add_points(scene, world_of_voxel(node, ijk))
    return case, scene, node, segmentation, clicks, ijk, expected


def test_second_segment_leaves_the_first_untouched_and_undo_redo_are_exact(spleen_scene):
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    source_before = voxels_of(node).tobytes()
    logic = oracle_logic()
    first = logic.segment(node, segmentation, positive_points=clicks, view="axial", whole_volume=False).segment_ids[0]
    first_voxels = segment_mask(segmentation, first, node)
    assert dice(first_voxels, expected) >= 0.999

    # the same object again, whole volume, as a second segment: the two overlap
    second = logic.segment(node, segmentation, positive_points=clicks, view="axial").segment_ids[0]
    assert second != first
    np.testing.assert_array_equal(segment_mask(segmentation, first, node), first_voxels)
    propagated = segment_mask(segmentation, second, node)
    assert dice(propagated, case.mask) >= 0.999

    logic.reset(node, segmentation, second)
    assert not segment_mask(segmentation, second, node).any()
    logic.undo(node, segmentation, second)
    np.testing.assert_array_equal(segment_mask(segmentation, second, node), propagated)
    logic.redo(node, segmentation, second)
    assert not segment_mask(segmentation, second, node).any()
    logic.undo(node, segmentation, second)
    logic.undo(node, segmentation, second)
    assert not segment_mask(segmentation, second, node).any()  # before its first prediction
    np.testing.assert_array_equal(segment_mask(segmentation, first, node), first_voxels)
    assert voxels_of(node).tobytes() == source_before


def test_prompting_a_hand_drawn_segment_keeps_what_was_drawn(spleen_scene):
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    segment_id = segmentation.GetSegmentation().AddEmptySegment("", "drawn")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
    drawn = np.zeros(case.mask.shape, dtype=bool)
    far_slice = 0 if int(ijk[2]) > 3 else case.mask.shape[0] - 1
    drawn[far_slice, 10:20, 10:20] = True
    apply_update(MaskUpdate(0, (0, drawn.shape[0], 0, drawn.shape[1], 0, drawn.shape[2]), drawn), segmentation,
                 segment_id, node)
    logic = oracle_logic()

    logic.segment(node, segmentation, positive_points=clicks, view="axial", whole_volume=False, segment_id=segment_id)

    now = segment_mask(segmentation, segment_id, node)
    assert now[drawn].all()  # the drawing survives
    assert dice(now & ~drawn, expected) >= 0.999  # and the model's answer is added on the clicked slice
    logic.undo(node, segmentation, segment_id)
    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, node), drawn)


def test_start_from_segment_then_a_negative_click_removes_the_object_on_that_slice(spleen_scene, tmp_path):
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    logic = oracle_logic()
    segment_id = logic.segment(node, segmentation, positive_points=clicks, view="axial").segment_ids[0]
    other_logic = oracle_logic()  # e.g. after reloading the module: the model has never seen this segment
    other_logic.start_from_segment(node, segmentation, segment_id)
    negative = add_points(scene, world_of_voxel(node, ijk), name="negative")

    other_logic.segment(node, segmentation, negative_points=negative, view="axial", whole_volume=False,
                        segment_id=segment_id)

    now = segment_mask(segmentation, segment_id, node)
    assert not now[int(ijk[2])].any()
    assert dice(now, case.mask & ~expected) >= 0.999  # the other slices are kept


def test_segments_live_on_the_source_volume_grid(spleen_scene):
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    segment_id = oracle_logic().segment(node, segmentation, positive_points=clicks).segment_ids[0]
    labelmap = slicer.vtkOrientedImageData()
    segmentation.GetBinaryLabelmapRepresentation(segment_id, labelmap)
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    np.testing.assert_allclose([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)],
                               local_ijk_to_ras(node), atol=1e-6)
    reference = segmentation.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
    assert reference is node


def test_typed_names_become_named_coloured_coded_segments(spleen_scene):
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    # one name per request: names typed together are fused per voxel by score (text_protocol.py), and the oracle
    # finds the same bright region for every name
    logic = oracle_logic()
    results = [logic.segment(node, segmentation, text=typed) for typed in ("spleen", "kidney left", "glowing thing")]
    segment_ids = [result.segment_ids[0] for result in results]

    names = [segmentation.GetSegmentation().GetSegment(s).GetName() for s in segment_ids]
    assert names == ["Spleen", "Left kidney", "Glowing thing"]
    tags = [segment_tag(segmentation.GetSegmentation().GetSegment(s)) for s in segment_ids]
    assert "SCT^78961009^Spleen" in tags[0]
    assert "SCT^64033007^Kidney~SCT^7771000^Left" in tags[1]
    assert "SCT^85756007^Tissue" in tags[2]
    assert not results[0].notes and not results[1].notes
    # one note from the terminology (coded generically), one from the model's vocabulary (not a trained name)
    assert len(results[2].notes) == 2 and all("glowing thing" in note for note in results[2].notes)
    assert dice(segment_mask(segmentation, segment_ids[0], node), case.mask) >= 0.999  # the text found it


def test_text_on_this_slice_only_writes_that_slice(spleen_scene):
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    view = add_slice_node(scene, "axial", world_of_voxel(node, ijk))
    result = oracle_logic().segment(node, segmentation, text="spleen", view=view, whole_volume=False)
    mask = segment_mask(segmentation, result.segment_ids[0], node)
    assert set(np.flatnonzero(mask.any(axis=(1, 2)))) == {int(ijk[2])}
    assert dice(mask[int(ijk[2])], case.mask[int(ijk[2])]) >= 0.999


def test_clear_errors_instead_of_wrong_results(spleen_scene):
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    logic = oracle_logic()
    with pytest.raises(PromptError, match="type what to segment"):
        logic.segment(node, segmentation)
    warp = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    node.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(VolumeError, match="Harden the transform"):
        logic.segment(node, segmentation, positive_points=clicks)


def test_undo_after_a_hand_edit_returns_to_the_hand_edited_segment(spleen_scene):
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    logic = oracle_logic()
    segment_id = logic.segment(node, segmentation, positive_points=clicks, view="axial").segment_ids[0]
    edited = segment_mask(segmentation, segment_id, node)
    k = int(np.flatnonzero(edited.any(axis=(1, 2)))[0])  # erase the object's first slice by hand
    edited[k] = False
    apply_update(MaskUpdate(0, (k, k + 1, 0, edited.shape[1], 0, edited.shape[2]), edited[k:k + 1]), segmentation,
                 segment_id, node)

    logic.segment(node, segmentation, positive_points=clicks, view="axial", segment_id=segment_id)
    assert segment_mask(segmentation, segment_id, node)[k].any()  # re-propagation predicted that slice again
    logic.undo(node, segmentation, segment_id)

    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, node), edited)


def test_a_refining_click_does_not_reread_an_unedited_segment(spleen_scene, monkeypatch):
    """Reading a whole segment back costs time on big volumes: only a segment edited by hand is re-read."""
    from MedicalSAM3SlicerLib import segment_io

    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    logic = oracle_logic()
    segment_id = logic.segment(node, segmentation, positive_points=clicks, view="axial").segment_ids[0]
    reads = []
    original = segment_io.segment_mask
    monkeypatch.setattr(segment_io, "segment_mask", lambda *args: reads.append(args) or original(*args))

    logic.segment(node, segmentation, positive_points=clicks, view="axial", whole_volume=False, segment_id=segment_id)
    assert reads == []
    edited = segment_mask(segmentation, segment_id, node)
    edited[0, :5, :5] = True
    apply_update(MaskUpdate(0, (0, 1, 0, 5, 0, 5), edited[:1, :5, :5]), segmentation, segment_id, node)
    logic.segment(node, segmentation, positive_points=clicks, view="axial", whole_volume=False, segment_id=segment_id)
    assert len(reads) == 1 and segment_mask(segmentation, segment_id, node)[0, :5, :5].all()


def test_a_target_that_is_not_found_adds_no_empty_segment_and_says_so(spleen_scene):
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    empty_slice = int(np.flatnonzero(~case.mask.any(axis=(1, 2)))[0])
    view = add_slice_node(scene, "axial", world_of_voxel(node, (0, 0, empty_slice)))
    result = oracle_logic().segment(node, segmentation, text="spleen", view=view, whole_volume=False)
    assert result.segment_ids == [] and segmentation.GetSegmentation().GetNumberOfSegments() == 0
    assert result.notes == [f"No spleen was found on axial slice {empty_slice}; no segment was added."]


def test_the_gui_path_model_on_the_worker_thread_segment_written_on_the_main_thread(spleen_scene):
    import threading
    import time

    from MedicalSAM3SlicerLib.worker import ModelWorker

    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    logic, worker, results = oracle_logic(), ModelWorker(), []
    writer_threads = []
    original_apply = logic.apply
    logic.apply = lambda request, updates: writer_threads.append(threading.get_ident()) or \
        original_apply(request, updates)

    request = logic.prepare(node, segmentation, positive_points=clicks, view="axial", whole_volume=False)
    clicks.RemoveAllControlPoints()  # the GUI clears the clicks at once; the request keeps what it needs
    worker.submit(lambda: logic.predict(request), on_done=lambda updates: results.append(logic.apply(request, updates)),
                  on_error=results.append)
    deadline = time.time() + 30
    while not results and time.time() < deadline:
        worker.deliver_finished()
        time.sleep(0.01)
    worker.shutdown()

    assert writer_threads == [threading.get_ident()]
    assert dice(segment_mask(segmentation, results[0].segment_ids[0], node), expected) >= 0.999


def test_undo_then_a_new_click_keeps_the_object_undo_restored(spleen_scene):
    """A negative click removes the object, undo brings it back, a click on another slice propagates: the undone
    negative click must not come back and remove the object on its slice."""
    case, scene, node, segmentation, clicks, ijk, expected = spleen_scene
    logic = oracle_logic()
    segment_id = logic.segment(node, segmentation, positive_points=clicks, view="axial",
                               whole_volume=False).segment_ids[0]
    logic.segment(node, segmentation, negative_points=add_points(scene, world_of_voxel(node, ijk), "no"),
                  view="axial", whole_volume=False, segment_id=segment_id)
    assert not segment_mask(segmentation, segment_id, node).any()
    logic.undo(node, segmentation, segment_id)
    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, node), expected)

    slices = np.flatnonzero(case.mask.any(axis=(1, 2)))
    other = int(slices[len(slices) // 4])
    assert other != int(ijk[2])
    other_ijk, _ = click_in_object(case.mask[other:other + 1], 2)
    logic.segment(node, segmentation, positive_points=add_points(scene, world_of_voxel(node, (*other_ijk[:2], other)),
                                                                 "more"),
                  view="axial", whole_volume=True, segment_id=segment_id)

    result = segment_mask(segmentation, segment_id, node)
    k = int(ijk[2])
    np.testing.assert_array_equal(result[k], expected[k])  # the restored object is still on its slice
    assert dice(result, case.mask) >= 0.99
