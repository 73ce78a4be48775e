"""Nothing lands in the wrong patient, volume or segmentation (issue 17, High 1 and Medium 3), under slicer-core
with the bright-region stand-in model."""

from __future__ import annotations

import numpy as np
import pytest

from slicer_scene import add_points, add_slice_node, load_volume_node, new_scene, world_of_voxel

from medsam3.errors import PromptError

from MedicalSAM3SlicerLib.segment_io import segment_mask
from MedicalSAM3SlicerLib.worker import ModelWorker

from slicer_patients import (A_BOX, B_BOX, SHAPE, GatedOracle, GroundTruthOracle, bright_box, box_mask,
                             load_patient, logic_with, segment_count)


def test_a_result_of_patient_a_is_dropped_when_it_arrives_after_the_scene_was_closed(tmp_path):
    scene = new_scene()
    logic = logic_with(GroundTruthOracle())
    volume_a, segmentation_a, centre = load_patient(scene, tmp_path / "a", A_BOX, "patient A")
    clicks = add_points(scene, world_of_voxel(volume_a, centre))
    request = logic.prepare(volume_a, segmentation_a, text="tumor", positive_points=clicks, view="axial",
                            whole_volume=False)
    updates = logic.predict(request)

    scene.Clear(0)
    logic.close()  # what the module does on the scene's EndCloseEvent
    volume_b, segmentation_b, _ = load_patient(scene, tmp_path / "b", B_BOX, "patient B")
    assert (volume_b.GetID(), segmentation_b.GetID()) == (request.volume_node_id, request.segmentation_node_id)

    undo_saved = []
    result = logic.apply(request, updates, save_state_for_undo=lambda: undo_saved.append(True))

    assert result.dropped and not result.segment_ids and len(result.notes) == 1 and "dropped" in result.notes[0]
    assert segment_count(segmentation_b) == 0 and not undo_saved


def test_a_stale_result_is_dropped_also_when_the_logic_was_not_told_the_scene_closed(tmp_path):
    """A script that clears the scene without calling close(): the nodes are compared as objects, not by ID."""
    scene = new_scene()
    logic = logic_with(GroundTruthOracle())
    volume_a, segmentation_a, centre = load_patient(scene, tmp_path / "a", A_BOX, "patient A")
    clicks = add_points(scene, world_of_voxel(volume_a, centre))
    request = logic.prepare(volume_a, segmentation_a, positive_points=clicks, view="axial", whole_volume=False)
    updates = logic.predict(request)
    scene.Clear(0)
    volume_b, segmentation_b, centre_b = load_patient(scene, tmp_path / "b", B_BOX, "patient B")

    assert logic.apply(request, updates).dropped
    assert segment_count(segmentation_b) == 0
    # patient B is then segmented normally, on B's own voxels
    clicks_b = add_points(scene, world_of_voxel(volume_b, centre_b))
    result = logic.segment(volume_b, segmentation_b, positive_points=clicks_b, view="axial", whole_volume=False)
    mask = segment_mask(segmentation_b, result.segment_ids[0], volume_b)
    assert mask.any() and not (mask & box_mask(*A_BOX)).any() and (mask <= box_mask(*B_BOX)).all()


def test_a_result_is_dropped_when_the_volume_got_other_voxels_meanwhile(tmp_path):
    scene = new_scene()
    logic = logic_with(GroundTruthOracle())
    volume, segmentation, centre = load_patient(scene, tmp_path / "a", A_BOX, "patient A")
    request = logic.prepare(volume, segmentation, positive_points=add_points(scene, world_of_voxel(volume, centre)),
                            view="axial", whole_volume=False)
    updates = logic.predict(request)
    other = load_volume_node(scene, bright_box(*B_BOX), tmp_path, name="other")
    volume.SetAndObserveImageData(other.GetImageData())  # e.g. a script replacing the image in place

    result = logic.apply(request, updates)

    assert result.dropped and "changed" in result.notes[0]
    assert segment_count(segmentation) == 0


def test_journey_close_the_scene_while_the_prediction_runs_then_load_patient_b(tmp_path):
    """Load patient A, click, close the scene while the model works, load patient B: nothing of A lands in B, and
    B is then segmented on its own voxels. The model runs on the module's worker thread; results are delivered as
    the module's timer delivers them."""
    scene = new_scene()
    model = GatedOracle()
    logic = logic_with(model)
    worker = ModelWorker()
    delivered = []
    try:
        volume_a, segmentation_a, centre = load_patient(scene, tmp_path / "a", A_BOX, "patient A")
        request = logic.prepare(volume_a, segmentation_a, text="tumor",
                                positive_points=add_points(scene, world_of_voxel(volume_a, centre)), view="axial")
        worker.submit(lambda: logic.predict(request), on_done=lambda updates: delivered.append(
            logic.apply(request, updates)), on_error=delivered.append)
        assert model.started.wait(60)  # the prediction is under way

        scene.Clear(0)
        logic.close()
        volume_b, segmentation_b, centre_b = load_patient(scene, tmp_path / "b", B_BOX, "patient B")
        model.release.set()
        while worker.busy:
            worker.deliver_finished(0.05)

        assert len(delivered) == 1 and not isinstance(delivered[0], BaseException), delivered
        assert delivered[0].dropped and segment_count(segmentation_b) == 0
        result = logic.segment(volume_b, segmentation_b, text="tumor",
                               positive_points=add_points(scene, world_of_voxel(volume_b, centre_b)), view="axial")
        mask = segment_mask(segmentation_b, result.segment_ids[0], volume_b)
        assert segment_count(segmentation_b) == 1
        np.testing.assert_array_equal(mask, box_mask(*B_BOX))
    finally:
        model.release.set()
        worker.shutdown()
        logic.close()


def show_in_view(scene, slice_node, volume_node):
    """The view's slice composite node, as the application creates one per view, showing ``volume_node``."""
    composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    composite.SetLayoutName(slice_node.GetLayoutName())
    composite.SetBackgroundVolumeID(volume_node.GetID())
    return composite


def test_journey_two_series_a_click_in_the_view_showing_the_second_is_not_put_on_the_first(tmp_path):
    """Series 1 is the source volume and has a segment; series 2 (another grid, another object) is loaded later and
    shown in the Red view. A click there is refused in one line naming both series, and nothing changes; with
    series 2 chosen as the source (and a segmentation for it) the same click segments series 2's object."""
    scene = new_scene()
    logic = logic_with(GroundTruthOracle())
    series1, segmentation1, centre1 = load_patient(scene, tmp_path / "1", A_BOX, "series 1")
    logic.segment(series1, segmentation1, positive_points=add_points(scene, world_of_voxel(series1, centre1)),
                  view="axial", whole_volume=False)
    first_voxels = segment_mask(segmentation1, segmentation1.GetSegmentation().GetNthSegmentID(0), series1)
    (tmp_path / "2").mkdir()
    series2 = load_volume_node(scene, bright_box(*B_BOX, spacing=(0.9, 0.9, 2.5), name="series 2"), tmp_path / "2",
                               name="series 2")
    centre2 = world_of_voxel(series2, [(lo + hi) // 2 for lo, hi in zip(*B_BOX)])
    red = add_slice_node(scene, "axial", centre2)
    composite = show_in_view(scene, red, series2)
    click = add_points(scene, centre2)

    with pytest.raises(PromptError) as refused:
        logic.segment(series1, segmentation1, positive_points=click, view=red, whole_volume=False)
    message = str(refused.value)
    assert "\n" not in message and "'series 2'" in message and "'series 1'" in message
    assert segment_count(segmentation1) == 1
    np.testing.assert_array_equal(segment_mask(segmentation1, segmentation1.GetSegmentation().GetNthSegmentID(0),
                                               series1), first_voxels)
    assert not logic.prefetch_around(series1, red)  # nor is series 1 encoded for that view

    segmentation2 = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation 2")
    result = logic.segment(series2, segmentation2, positive_points=click, view=red, whole_volume=False)
    found = segment_mask(segmentation2, result.segment_ids[0], series2)
    k = (B_BOX[0][2] + B_BOX[1][2]) // 2
    np.testing.assert_array_equal(found[k], box_mask(*B_BOX)[k])
    composite.SetForegroundVolumeID(series1.GetID())
    composite.SetForegroundOpacity(0.5)  # series 1 shown over series 2: a click is judged on series 1 too
    logic.segment(series1, segmentation1, positive_points=add_points(scene, world_of_voxel(series1, centre1)),
                  view=red, whole_volume=False)


def test_stop_and_failures_of_closed_scenes_get_a_status_line_and_no_dialog(tmp_path):
    """Stop ends a whole-volume prediction between slices (the engine raises Cancelled): one status line, no error
    dialog, nothing written. A job that fails after its scene was closed gets a status line too; a real failure
    gets the dialog."""
    scene = new_scene()
    logic = logic_with(GroundTruthOracle())
    volume, segmentation, centre = load_patient(scene, tmp_path / "a", A_BOX, "patient A")
    request = logic.prepare(volume, segmentation, positive_points=add_points(scene, world_of_voxel(volume, centre)),
                            view="axial", whole_volume=True)
    worker = ModelWorker()
    errors = []
    try:
        worker.submit(lambda: logic.predict(request, should_stop=lambda: True), on_error=errors.append)
        while worker.busy:
            worker.deliver_finished(0.05)
    finally:
        worker.shutdown()

    message, dialog = logic.failure_report(request, errors[0])
    assert not dialog and "\n" not in message and segment_count(segmentation) == 0
    assert logic.failure_report(request, RuntimeError("CUDA out of memory"))[1]  # a real failure: the dialog
    scene.Clear(0)
    logic.close()
    message, dialog = logic.failure_report(request, RuntimeError("session closed"))
    assert not dialog and "dropped" in message


def test_what_the_logic_keeps_per_segment_is_bounded_by_the_object_not_the_volume(tmp_path):
    """Before: every segment the model touched kept a full-volume boolean array (1 byte per voxel) until the scene
    closed. Now its bounding box only, nothing once emptied; a volume removed from the scene frees its copy."""
    scene = new_scene()
    logic = logic_with(GroundTruthOracle())
    volume, segmentation, centre = load_patient(scene, tmp_path / "a", A_BOX, "patient A")
    segment_id = logic.segment(volume, segmentation, view="axial",
                               positive_points=add_points(scene, world_of_voxel(volume, centre))).segment_ids[0]
    held = logic.memory_held()
    full_volume = int(np.prod(SHAPE))
    print(f"\nbytes held per segment: {held['written masks']} (a full-volume array: {full_volume})")
    assert held["written masks"] == box_mask(*A_BOX).sum() < full_volume

    logic.reset(volume, segmentation, segment_id)
    assert logic.memory_held()["written masks"] == 0
    other, other_segmentation, other_centre = load_patient(scene, tmp_path / "b", B_BOX, "patient B")
    scene.RemoveNode(volume)
    logic.segment(other, other_segmentation, view="axial", whole_volume=False,
                  positive_points=add_points(scene, world_of_voxel(other, other_centre)))
    assert logic.memory_held()["volume copies"] == full_volume * 2  # B's int16 copy only


def test_the_remembered_segment_equals_a_full_volume_array_after_any_updates():
    from medsam3.interaction.session import MaskUpdate
    from MedicalSAM3SlicerLib.written_mask import WrittenMask

    rng = np.random.default_rng(3)
    full, kept = np.zeros(SHAPE, dtype=bool), WrittenMask(SHAPE)
    for step in range(200):
        low = [int(rng.integers(0, n)) for n in SHAPE]
        high = [int(rng.integers(lo + 1, n + 1)) for lo, n in zip(low, SHAPE)]
        values = rng.random([h - lo for lo, h in zip(low, high)]) < (0.0 if step % 7 == 0 else 0.5)
        update = MaskUpdate(1, (low[0], high[0], low[1], high[1], low[2], high[2]), values)
        update.apply_to(full)
        kept.apply(update)
        assert kept.equals(full) and kept.nbytes <= full.size
        probe = full.copy()
        probe.flat[int(rng.integers(0, probe.size))] ^= True
        assert not kept.equals(probe)
