"""The two transports keep one contract: the same behaviour test set runs in-process (LocalBackend) and through a
real server on a loopback port (RemoteBackend / RemoteSession), with the ground-truth oracle as the model."""

from __future__ import annotations

import numpy as np
import pytest

from medsam3.errors import PromptError
from medsam3.geometry.volume import Volume
from medsam3.interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt
from medsam3.transports.model_loading import load_backend
from medsam3.transports.remote_client import RemoteBackend

from oracle import ground_truth_volume
from placement import dice
from server_harness import API_KEY, oracle_backend, running_server

K, J, I = np.mgrid[:12, :40, :48]
TRUTH = ((K - 6) / 4.5) ** 2 + ((J - 20) / 9) ** 2 + ((I - 22) / 12) ** 2 <= 1.0  # one ellipsoid
CENTRE = (22.0, 20.0, 6.0)  # (i, j, k)


@pytest.fixture(scope="module")
def server_url():
    with running_server() as url:
        yield url


@pytest.fixture(params=["in-process", "remote"])
def session(request):
    matrix = np.diag([-0.8, -0.8, 2.5, 1.0])
    matrix[:3, 3] = (30.0, 12.0, -60.0)
    volume = ground_truth_volume(Volume(np.zeros(TRUTH.shape, np.int16), matrix), TRUTH)
    backend = oracle_backend() if request.param == "in-process" else \
        RemoteBackend(request.getfixturevalue("server_url"), API_KEY)
    assert backend.info().model == "ground-truth-oracle"
    opened = backend.open_session(volume)
    yield opened
    opened.close()


def _click(session, object_id: int, point=CENTRE, whole_volume: bool = False, positive: bool = True):
    return session.add_prompt(object_id, SlicePrompt("axial", points=(PointPrompt(point, positive=positive),)),
                              whole_volume=whole_volume)


def test_a_click_segments_the_object_on_the_clicked_slice_only(session):
    object_id = session.new_object_id()
    update = _click(session, object_id)
    mask = session.mask(object_id)
    assert mask.shape == TRUTH.shape
    assert dice(mask[6], TRUTH[6]) >= 0.97  # the oracle answers on the model grid: a tip voxel may differ
    assert not np.delete(mask, 6, axis=0).any()
    assert update.object_id == object_id and update.slice_scores.keys() == {6}
    replayed = np.zeros(TRUTH.shape, bool)
    update.apply_to(replayed)  # the update carries exactly the change
    np.testing.assert_array_equal(replayed, mask)


def test_a_click_through_the_volume_gives_the_whole_object(session):
    object_id = session.new_object_id()
    _click(session, object_id, whole_volume=True)
    assert dice(session.mask(object_id), TRUTH) >= 0.95


def test_a_box_segments_what_it_frames(session):
    object_id = session.new_object_id()
    session.add_prompt(object_id, SlicePrompt("axial", box=BoxPrompt((11.0, 12.0, 6.0), (33.0, 28.0, 6.0))))
    assert dice(session.mask(object_id)[6], TRUTH[6]) >= 0.97


def test_undo_redo_and_reset_give_back_each_earlier_mask_exactly(session):
    object_id = session.new_object_id()
    drawn = np.zeros(TRUTH.shape, bool)
    drawn[2, 5:9, 5:9] = True
    session.set_mask(object_id, drawn, label="drawn")
    _click(session, object_id)
    clicked = session.mask(object_id).copy()
    assert clicked[6].any() and clicked[2, 5:9, 5:9].all()

    session.undo(object_id)
    np.testing.assert_array_equal(session.mask(object_id), drawn)
    session.redo(object_id)
    np.testing.assert_array_equal(session.mask(object_id), clicked)
    session.reset(object_id)
    assert not session.mask(object_id).any()
    session.undo(object_id)
    np.testing.assert_array_equal(session.mask(object_id), clicked)


def test_objects_are_independent(session):
    first = session.new_object_id()
    _click(session, first)
    clicked = session.mask(first).copy()
    second = session.new_object_id()
    assert second != first  # a used id is never handed out again
    drawn = np.zeros(TRUTH.shape, bool)
    drawn[6, 1:4, 1:4] = True
    session.set_mask(second, drawn)
    session.reset(second)
    assert not session.mask(second).any()
    np.testing.assert_array_equal(session.mask(first), clicked)


def test_a_click_outside_the_volume_is_refused_and_loses_nothing(session):
    object_id = session.new_object_id()
    _click(session, object_id)
    before = session.mask(object_id).copy()
    with pytest.raises(PromptError, match="outside the volume"):
        _click(session, object_id, point=(1e6, 0.0, 0.0))
    np.testing.assert_array_equal(session.mask(object_id), before)
    _click(session, object_id, whole_volume=True)  # still working
    assert dice(session.mask(object_id), TRUTH) >= 0.95


def _requests(session) -> list:
    """A user's session: a click on a slice, a negative click refining it, a box for a second object, a click
    through the volume for a third, then undo and redo."""
    first, second, third = session.new_object_id(), session.new_object_id(), session.new_object_id()
    return [_click(session, first), session.add_prompt(first, SlicePrompt("axial", points=(
                PointPrompt(CENTRE), PointPrompt((30.0, 20.0, 6.0), positive=False)))),
            session.add_prompt(second, SlicePrompt("coronal", box=BoxPrompt((11.0, 20.0, 3.0), (33.0, 20.0, 9.0)))),
            _click(session, third, whole_volume=True), session.undo(third), session.redo(third),
            *[session.mask(object_id) for object_id in (first, second, third)]]


@pytest.mark.parametrize("model", ["ground-truth oracle", "tiny-random"])
def test_in_process_and_remote_give_the_same_masks_for_the_same_requests(model):
    """Directly: one backend (the oracle, or the tiny random-weight transformers model, whose masks no truth
    predicts) answers in this process and behind a real server; every update and mask is the same, to the bit."""
    matrix = np.diag([-0.8, -0.8, 2.5, 1.0])
    volume = ground_truth_volume(Volume(np.zeros(TRUTH.shape, np.int16), matrix), TRUTH)
    backend = oracle_backend() if model == "ground-truth oracle" else load_backend(source="tiny-random",
                                                                                  device="cpu")
    answers = {}
    with running_server(backend=backend) as url:
        for transport, chosen in (("in-process", backend), ("remote", RemoteBackend(url, API_KEY))):
            session = chosen.open_session(volume)
            answers[transport] = _requests(session)
            session.close()
    local, remote = answers["in-process"], answers["remote"]
    assert any(np.any(mask) for mask in local[-3:])  # the requests segmented something
    for here, there in zip(local, remote):
        if isinstance(here, np.ndarray):
            np.testing.assert_array_equal(here, there)
            continue
        assert (here.object_id, tuple(here.box), here.axis, here.label, here.note) == \
               (there.object_id, tuple(there.box), there.axis, there.label, there.note)
        np.testing.assert_array_equal(here.values, there.values)
        assert here.slice_scores == pytest.approx(there.slice_scores, abs=0)
