"""Interactive sessions: accumulated clicks, propagation, undo/redo, changed-region updates."""

import numpy as np

from medsam3.interaction.engine import SegmentationEngine
from medsam3.interaction.prompts import PointPrompt, SlicePrompt
from medsam3.interaction.session import SegmentationSession

from cases import load_case
from oracle import GroundTruthOracle, ground_truth_volume
from placement import click_in_object, dice


def _session():
    case = load_case("spleen")
    volume = ground_truth_volume(case.volume, case.mask)
    return case, SegmentationSession(SegmentationEngine(GroundTruthOracle()), volume)


def test_update_covers_only_the_changed_region_and_rebuilds_the_mask():
    case, session = _session()
    ijk, expected = click_in_object(case.mask, 2)
    update = session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    rebuilt = np.zeros(case.mask.shape, dtype=bool)
    update.apply_to(rebuilt)
    np.testing.assert_array_equal(rebuilt, session.mask(1))
    assert update.values.dtype == bool and session.mask(1).dtype == bool  # a mask, not numbers to threshold
    assert dice(rebuilt, expected) >= 0.999
    assert update.values.size < case.mask.size / 20  # one slice's box, not the volume
    k0, k1 = update.box[:2]
    assert (k0, k1) == (int(ijk[2]), int(ijk[2]) + 1)


def test_second_object_leaves_the_first_unchanged_and_undo_redo_are_exact():
    case, session = _session()
    ijk, _ = click_in_object(case.mask, 2)
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    first = session.mask(1)
    session.add_prompt(2, SlicePrompt("axial", points=(PointPrompt(ijk),)), whole_volume=True)
    np.testing.assert_array_equal(session.mask(1), first)
    assert dice(session.mask(2), case.mask) >= 0.999

    after_propagation = session.mask(2)
    session.reset(2)
    assert not session.mask(2).any()
    undo = session.undo(2)
    np.testing.assert_array_equal(session.mask(2), after_propagation)
    mirror = np.zeros_like(after_propagation)
    undo.apply_to(mirror)
    np.testing.assert_array_equal(mirror, after_propagation)  # the update alone restores a client's copy
    session.redo(2)
    assert not session.mask(2).any()
    session.undo(2)
    session.undo(2)
    assert not session.mask(2).any()  # back before the first prediction
    assert not session.can_undo(2)
    assert session.undo(2).is_empty


def test_negative_click_removes_and_source_volume_is_untouched():
    case, session = _session()
    before = session.volume.array.copy()
    ijk, _ = click_in_object(case.mask, 2)
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    assert session.mask(1).any()
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk, positive=False),)))
    assert not session.mask(1).any()  # the negative click on the same slice cancels the object there
    np.testing.assert_array_equal(session.volume.array, before)


def test_propagation_reports_progress_and_a_stop_leaves_the_object_as_it_was():
    from medsam3.errors import Cancelled
    import pytest

    case, session = _session()
    ijk, _ = click_in_object(case.mask, 2)
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    before = session.mask(1)
    seen = []
    with pytest.raises(Cancelled, match="nothing was changed"):
        session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)), whole_volume=True,
                           progress=lambda done, total: seen.append((done, total)), should_stop=lambda: len(seen) >= 3)
    np.testing.assert_array_equal(session.mask(1), before)
    assert seen == [(1, 26), (2, 26), (3, 26)]

    seen.clear()
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)), whole_volume=True,
                       progress=lambda done, total: seen.append(done))
    assert seen == sorted(seen) and seen[-1] == len(session.engine.propagate(
        session.volume, [SlicePrompt("axial", points=(PointPrompt(ijk),))]).slice_scores)
    assert session.can_undo(1)


def _another_slice_of_the_object(mask: np.ndarray, k: int) -> int:
    """An axial slice of the object a few slices from ``k``, well inside it."""
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    return int(slices[len(slices) // 4]) if abs(int(slices[len(slices) // 4]) - k) > 2 else int(slices[-len(slices) // 4])


def test_undo_forgets_the_undone_click_so_the_next_click_keeps_the_restored_object():
    """Click, a negative click that removes the object, undo (the object is back), then a click on another slice
    through the volume: the undone negative click must not come back and remove the object on its slice."""
    case, session = _session()
    ijk, on_slice = click_in_object(case.mask, 2)
    k = int(ijk[2])
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk, positive=False),)))
    session.undo(1)
    np.testing.assert_array_equal(session.mask(1), on_slice)  # the voxels are back

    other = _another_slice_of_the_object(case.mask, k)
    other_ijk, _ = click_in_object(case.mask[other:other + 1], 2)
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt((other_ijk[0], other_ijk[1], other),),)),
                       whole_volume=True)

    mask = session.mask(1)
    np.testing.assert_array_equal(mask[k], on_slice[k])  # the restored object is still on its slice
    assert dice(mask, case.mask) >= 0.99


def test_undo_of_a_reset_brings_back_its_click_and_undo_to_the_start_forgets_it():
    case, session = _session()
    ijk, on_slice = click_in_object(case.mask, 2)
    k = ijk[2]
    outside = tuple(float(v) for v in np.argwhere(~case.mask[int(k)])[0][::-1]) + (k,)  # (i, j, k) off the object
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    session.reset(1)
    session.undo(1)
    # a negative click off the object refines the restored answer (its click is back): the object stays
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(outside, positive=False),)))
    np.testing.assert_array_equal(session.mask(1), on_slice)

    session.undo(1)
    session.undo(1)  # before the first click: its prompt is gone too, so a negative click alone finds nothing
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(outside, positive=False),)))
    assert not session.mask(1).any()


def test_each_typed_phrase_becomes_a_new_object_named_as_typed_next_to_the_existing_ones():
    import pytest

    case, session = _session()
    ijk, on_slice = click_in_object(case.mask, 2)
    k = int(ijk[2])
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    assert session.new_object_id() == 2 and session.object_ids() == [1]

    on_one_slice = session.segment_text("spleen; liver", "axial", slice_index=k)  # the oracle finds the same

    assert [u.object_id for u in on_one_slice] == [2, 3] == session.object_ids()[1:]
    assert [u.label for u in on_one_slice] == ["spleen", "liver"]
    np.testing.assert_array_equal(session.mask(2)[k], case.mask[k])
    assert not np.delete(session.mask(2), k, axis=0).any()  # only that slice
    np.testing.assert_array_equal(session.mask(1), on_slice)  # the clicked object is left alone

    (whole,) = session.segment_text("spleen", "axial")
    assert whole.object_id == 4 and whole.label == "spleen" and session.new_object_id() == 5
    assert dice(session.mask(4), case.mask) >= 0.999
    assert session.can_undo(4) and not session.can_redo(4)
    session.undo(4)
    assert not session.mask(4).any() and session.can_redo(4) and not session.can_undo(4)
    with pytest.raises(Exception, match="There is no object 9"):
        session.mask(9)


def test_a_starting_mask_seeds_the_object_with_its_name_and_no_prompts_and_a_wrong_shape_is_refused():
    import pytest

    from medsam3.errors import PromptError

    case, session = _session()
    ijk, on_slice = click_in_object(case.mask, 2)
    with pytest.raises(PromptError, match=r"^The starting mask has shape \(2, 2, 2\); the volume has \(26, 166, 164\)\.$"):
        session.set_mask(1, np.zeros((2, 2, 2), dtype=bool))
    assert session.object_ids() == []  # nothing was created

    update = session.set_mask(1, on_slice.astype(np.uint8), label="spleen")  # any 0/1 array

    assert update.label == "spleen" and update.values.dtype == bool
    np.testing.assert_array_equal(session.mask(1), on_slice)
    rebuilt = np.zeros_like(on_slice)
    update.apply_to(rebuilt)
    np.testing.assert_array_equal(rebuilt, on_slice)
    outside = tuple(float(v) for v in np.argwhere(~case.mask[int(ijk[2])])[0][::-1]) + (ijk[2],)
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(outside, positive=False),)))
    assert not session.mask(1).any()  # no earlier click: a negative click alone finds nothing on that slice
    session.undo(1)
    session.undo(1)
    assert not session.mask(1).any() and not session.can_undo(1)


def test_nothing_to_undo_or_redo_gives_an_empty_update_for_that_object_and_an_unknown_object_is_refused():
    import pytest

    from medsam3.errors import PromptError

    case, session = _session()
    ijk, on_slice = click_in_object(case.mask, 2)
    session.set_mask(3, np.zeros(case.mask.shape, dtype=bool), label="liver")
    session.undo(3)
    for update in (session.undo(3), session.redo(3), session.redo(3)):
        assert update.object_id == 3 and update.label == "liver" and update.is_empty
        assert update.box == (0, 0, 0, 0, 0, 0) and update.slice_scores == {} and update.values.dtype == bool
        assert update.values.shape == (0, 0, 0) and update.axis == ""  # no view: nothing was done in one
        untouched = on_slice.copy()
        update.apply_to(untouched)
        np.testing.assert_array_equal(untouched, on_slice)
    assert session.set_mask(3, on_slice).label == "liver"  # a mask sent without a name keeps the object's name
    reset = session.reset(3)  # the update a client applies: False where the object was
    assert reset.values.dtype == bool and reset.values.size and not reset.values.any()
    for action in (session.undo, session.redo):
        with pytest.raises(PromptError, match=r"^There is no object 7 in this session\.$"):
            action(7)
    assert not session.can_undo(7) and not session.can_redo(7) and session.object_ids() == [3]


def test_a_prompt_that_changes_nothing_gives_an_empty_update_that_still_names_the_object_and_its_scores():
    case, session = _session()
    ijk, on_slice = click_in_object(case.mask, 2)
    k = int(ijk[2])
    session.set_mask(1, np.zeros(case.mask.shape, dtype=bool), label="spleen")
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))

    again = session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))  # the same answer

    assert again.is_empty and again.values.shape == (0, 0, 0) and again.values.dtype == bool
    assert (again.object_id, again.box, again.axis, again.label) == (1, (0, 0, 0, 0, 0, 0), "axial", "spleen")
    assert again.slice_scores == {k: 1.0}
    np.testing.assert_array_equal(session.mask(1), on_slice)
    nothing = session.undo(1)  # undoing the click that changed nothing changes nothing, still for that object
    assert nothing.is_empty and nothing.slice_scores == {}  # no prediction was undone: no scores to show
    assert (nothing.object_id, nothing.axis, nothing.label) == (1, "axial", "spleen")
    np.testing.assert_array_equal(session.mask(1), on_slice)
    restored = session.undo(1)  # the first click: its slice box back to empty
    assert restored.box[:2] == (k, k + 1) and not restored.values.any()
    assert not session.mask(1).any()


class _RecordingEngine:
    """The real engine, recording what the session asks of it (wiring: the stand-in model ignores the window,
    the target text and the threshold, so only the request shows whether the user's choices reach the model)."""

    def __init__(self, engine: SegmentationEngine):
        self._engine, self.calls = engine, []

    def __getattr__(self, name):
        method = getattr(self._engine, name)

        def recorded(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return method(*args, **kwargs)
        return recorded


def _recording_session(preprocessing):
    case = load_case("spleen")
    engine = _RecordingEngine(SegmentationEngine(GroundTruthOracle()))
    return case, engine, SegmentationSession(engine, ground_truth_volume(case.volume, case.mask), preprocessing)


def test_the_window_the_user_chose_is_the_one_the_model_sees():
    """A window far above every voxel shows the model a black slice: nothing is found; without it, the object."""
    from medsam3.model.preprocessing import Preprocessing

    case, _, session = _recording_session(Preprocessing.custom_window(5000.0, 10.0))
    ijk, on_slice = click_in_object(case.mask, 2)
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    assert not session.mask(1).any()
    session.add_prompt(2, SlicePrompt("axial", points=(PointPrompt(ijk),)), whole_volume=True)
    assert not session.mask(2).any()
    assert not any(u.values.any() for u in session.segment_text("spleen", "axial", slice_index=int(ijk[2])))
    session.preprocessing = None
    session.add_prompt(3, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    np.testing.assert_array_equal(session.mask(3), on_slice)


def test_the_session_hands_the_engine_the_typed_target_the_threshold_and_the_callbacks():
    """Wiring: what reaches the engine for a click, a propagation and typed text (the defaults included)."""
    from medsam3.interaction.prompts import BoxPrompt
    from medsam3.model.preprocessing import Preprocessing

    window = Preprocessing.ct_window("soft_tissue")
    case, engine, session = _recording_session(window)
    ijk, _ = click_in_object(case.mask, 2)
    k = int(ijk[2])
    session.set_mask(1, np.zeros(case.mask.shape, dtype=bool), label="spleen")
    first = session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    assert engine.calls[-1][0] == "predict_slice" and engine.calls[-1][1][2:] == (window, "spleen")
    assert first.axis == "axial" and first.label == "spleen" and first.slice_scores == {k: 1.0}
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)), target_text="left kidney")
    assert engine.calls[-1][1][3] == "left kidney"  # a typed target wins over the object's name

    # several prompts on one slice travel as one: every click, the latest box, the latest starting mask
    box_a, box_b = BoxPrompt((10, 10, k), (60, 60, k)), BoxPrompt((20, 20, k), (90, 90, k))
    start_a, start_b = np.zeros(case.mask.shape[1:], bool), case.mask[k].copy()
    session.add_prompt(1, SlicePrompt("axial", box=box_a, mask=start_a, slice_index=k))
    session.add_prompt(1, SlicePrompt("axial", box=box_b, mask=start_b, slice_index=k))
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk, positive=False),)))
    merged = engine.calls[-1][1][1]
    assert [p.positive for p in merged.points] == [True, True, False] and merged.slice_index == k
    assert merged.box == box_b and merged.mask is start_b

    progress, stop = (lambda done, total: None), (lambda: False)
    update = session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(ijk),)), whole_volume=True,
                                progress=progress, should_stop=stop)
    name, args, kwargs = engine.calls[-1]
    assert name == "propagate" and args[2:] == (window, "spleen") and len(args[1]) == 6
    assert kwargs == {"on_slice": progress, "should_stop": stop}
    assert update.axis == "axial" and len(update.slice_scores) > 1

    session.segment_text("spleen", "axial", slice_index=k)
    assert engine.calls[-1][0] == "segment_text_on_slice" and engine.calls[-1][1][1:] == ("spleen", "axial", k,
                                                                                         window, 0.5)
    session.segment_text("spleen", "coronal", slice_index=40, score_threshold=0.8)
    assert engine.calls[-1][1][1:] == ("spleen", "coronal", 40, window, 0.8)
    session.segment_text("spleen")
    assert engine.calls[-1][0] == "propagate_text" and engine.calls[-1][1][1:] == ("spleen", "axial", window, 0.5)
    session.segment_text("liver", "sagittal", score_threshold=0.3, progress=progress, should_stop=stop)
    assert engine.calls[-1][1][1:] == ("liver", "sagittal", window, 0.3)
    assert engine.calls[-1][2] == {"on_slice": progress, "should_stop": stop}


def test_a_phrase_the_model_was_not_trained_on_keeps_its_note_and_a_stopped_text_run_adds_no_object():
    import pytest

    from medsam3.errors import Cancelled

    case, engine, session = _recording_session(None)
    real = engine._engine.propagate_text

    def noted(*args, **kwargs):
        results = real(*args, **kwargs)
        results[0].note = "'spleen' is not a name the model was trained on."
        return results
    engine._engine.propagate_text = noted
    (update,) = session.segment_text("spleen")
    assert update.note == "'spleen' is not a name the model was trained on." and update.label == "spleen"
    del engine._engine.propagate_text
    (plain,) = session.segment_text("spleen")
    assert plain.note == "" and plain.object_id == 2
    with pytest.raises(Cancelled):
        session.segment_text("spleen", should_stop=lambda: True)
    assert session.object_ids() == [1, 2]


def test_undo_and_redo_updates_name_the_object_and_its_view_and_the_history_keeps_20_steps():
    case, session = _session()
    assert session.new_object_id() == 1  # an empty session starts at 1
    ijk, on_slice = click_in_object(case.mask, 2)
    session.set_mask(1, np.zeros(case.mask.shape, dtype=bool), label="spleen")
    done = session.add_prompt(1, SlicePrompt("coronal", points=(PointPrompt(ijk),)))
    undone = session.undo(1)
    assert (undone.object_id, undone.axis, undone.label, undone.box) == (1, "coronal", "spleen", done.box)
    assert not undone.values.any() and undone.slice_scores == {}  # an undo predicts nothing: no scores
    redone = session.redo(1)
    assert (redone.object_id, redone.axis, redone.label, redone.box) == (1, "coronal", "spleen", done.box)
    np.testing.assert_array_equal(redone.values, done.values)

    steps = [np.zeros(case.mask.shape, dtype=bool) for _ in range(22)]
    for n, step in enumerate(steps):
        step[n, :n + 1, 0] = True  # 22 different masks
        session.set_mask(2, step)
    for _ in range(20):
        assert session.can_undo(2)
        session.undo(2)
    assert not session.can_undo(2)  # 20 steps back, and no further
    np.testing.assert_array_equal(session.mask(2), steps[1])
