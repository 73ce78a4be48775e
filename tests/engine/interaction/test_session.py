"""Interactive sessions: accumulated clicks, propagation, undo/redo, changed-region updates."""

import numpy as np

from medsam3.interaction.engine import SegmentationEngine
from medsam3.interaction.prompts import PointPrompt, SlicePrompt
from medsam3.interaction.session import SegmentationSession

from cases import load_case
from oracle import GroundTruthOracle, ground_truth_volume
from test_engine_placement import click_in_object, dice


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
