"""The remote transport against the real server (uvicorn on a loopback port): the same prompts give the same
masks as in-process, concurrent clients get their own masks, and requests without the key are refused."""

from __future__ import annotations

import os
import threading

import httpx
import numpy as np
import pytest

from medsam3.apps.cli import main
from medsam3.errors import PromptError
from medsam3.interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt
from medsam3.errors import RemoteAuthError
from medsam3.transports.remote_client import RemoteBackend
from medsam3.geometry.volume import Volume
from medsam3.files.volume_io import read_volume

from cases import load_case
from oracle import ground_truth_volume
from server_harness import (API_KEY, oracle_backend, oracle_backend_factory, running_server, served_tiny_model,
                            spleen_ground_truth_nifti)
from placement import click_in_object, dice


@pytest.fixture(scope="module")
def server_url():
    with running_server() as url:
        yield url


def spleen_session_steps(session, volume: Volume, truth: np.ndarray) -> list:
    """One user's work on the spleen: click, refine through the volume, text, box, undo, redo, reset, set mask."""
    click, expected = click_in_object(truth, 2)
    k = int(click[2])
    rows = np.argwhere(expected[k])
    box = BoxPrompt((float(rows[:, 1].min()), float(rows[:, 0].min()), k),
                    (float(rows[:, 1].max()), float(rows[:, 0].max()), k))
    object_id = session.new_object_id()
    updates = [session.add_prompt(object_id, SlicePrompt("axial", points=(PointPrompt(click),)))]
    updates.append(session.add_prompt(object_id, SlicePrompt("axial", points=(PointPrompt(click),)),
                                      whole_volume=True, target_text="spleen"))
    updates += session.segment_text("spleen", "axial")
    updates += session.segment_text("spleen", "coronal", slice_index=80)
    boxed = session.new_object_id()
    updates.append(session.add_prompt(boxed, SlicePrompt("axial", box=box)))
    updates.append(session.undo(object_id))
    updates.append(session.redo(object_id))
    updates.append(session.reset(boxed))
    updates.append(session.undo(boxed))
    updates.append(session.set_mask(session.new_object_id(), truth, label="reference"))
    return updates


def test_remote_masks_equal_in_process_masks(server_url):
    case = load_case("spleen")
    volume = ground_truth_volume(case.volume, case.mask)

    local_session = oracle_backend().open_session(volume)
    local = spleen_session_steps(local_session, volume, case.mask)
    remote_session = RemoteBackend(server_url, API_KEY).open_session(volume)
    remote = spleen_session_steps(remote_session, volume, case.mask)
    for object_id in local_session.object_ids():  # the client's copy of every object equals the in-process one
        np.testing.assert_array_equal(remote_session.mask(object_id), local_session.mask(object_id))
    remote_session.close()

    assert len(remote) == len(local)
    for near, far in zip(local, remote):
        assert (far.object_id, far.box, far.label, far.axis) == (near.object_id, near.box, near.label, near.axis)
        np.testing.assert_array_equal(far.values, near.values)
        assert far.slice_scores == pytest.approx(near.slice_scores)
    assert any(not u.is_empty for u in remote)


def synthetic_case(index: int) -> tuple[Volume, np.ndarray]:
    """A small CT with one ellipsoid whose place and size depend on ``index``."""
    k, j, i = np.mgrid[:24, :64, :64]
    centre = (12, 16 + 4 * index, 48 - 4 * index)
    radii = (6 + index % 3, 8, 10)
    truth = sum(((g - c) / r) ** 2 for g, c, r in zip((k, j, i), centre, radii)) <= 1.0
    matrix = np.diag([-0.8, -0.8, 2.5, 1.0])
    matrix[:3, 3] = (40.0 * index, 10.0, -100.0)
    return ground_truth_volume(Volume(np.zeros(truth.shape, np.int16), matrix), truth), truth


def test_eight_concurrent_clients_each_get_their_own_mask(server_url):
    results: dict[int, float] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def client(index: int) -> None:
        try:
            volume, truth = synthetic_case(index)
            click, _ = click_in_object(truth, 2)
            session = RemoteBackend(server_url, API_KEY).open_session(volume)
            start.wait(timeout=60)
            mask = np.zeros(truth.shape, bool)
            session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(click),)), whole_volume=True).apply_to(mask)
            session.close()
            results[index] = dice(mask, truth)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert sorted(results) == list(range(8))
    assert all(score >= 0.95 for score in results.values()), results


def test_requests_without_the_right_key_are_refused(server_url):
    assert httpx.get(f"{server_url}/health").status_code == 200
    no_key = httpx.get(f"{server_url}/info")
    assert no_key.status_code == 401 and "API key" in no_key.json()["error"]["message"]
    wrong = httpx.get(f"{server_url}/info", headers={"Authorization": "Bearer not-the-key-at-all-000"})
    assert wrong.status_code == 403
    assert httpx.post(f"{server_url}/sessions", content=b"MSV1").status_code == 401
    with pytest.raises(RemoteAuthError, match="not this server's key"):
        RemoteBackend(server_url, "wrong-key-wrong-key-wrong").info()
    assert RemoteBackend(server_url, API_KEY).info().model == "ground-truth-oracle"


def test_bad_prompt_is_a_4xx_and_leaves_the_session_working(server_url):
    case = load_case("spleen")
    volume = ground_truth_volume(case.volume, case.mask)
    session = RemoteBackend(server_url, API_KEY).open_session(volume)
    click, expected = click_in_object(case.mask, 2)

    with pytest.raises(PromptError, match="outside the volume"):
        session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt((1e6, 0.0, 0.0)),)))
    mask = np.zeros(case.mask.shape, bool)
    session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt(click),))).apply_to(mask)
    assert dice(mask, expected) >= 0.95


def test_command_line_through_the_server_writes_the_in_process_labelmap(server_url, tmp_path, capsys):
    image, volume, truth = spleen_ground_truth_nifti(tmp_path)
    click = ",".join(f"{v:.3f}" for v in volume.ijk_to_ras_points([click_in_object(truth, 2)[0]])[0])
    arguments = ["segment", str(image), "--text", "spleen", "--point", click]

    assert main(arguments + ["-o", str(tmp_path / "local.nii.gz")], backend_factory=oracle_backend_factory) == 0
    assert main(arguments + ["-o", str(tmp_path / "remote.nii.gz"), "--server", server_url, "--api-key", API_KEY],
                backend_factory=oracle_backend_factory) == 0, capsys.readouterr().err

    remote = read_volume(tmp_path / "remote.nii.gz")
    np.testing.assert_array_equal(remote.array, read_volume(tmp_path / "local.nii.gz").array)
    assert dice(remote.array == 1, truth) >= 0.9


def test_api_keys_never_appear_in_the_server_output(capfd, caplog):
    wrong_key = "a-wrong-key-that-must-not-be-logged"
    with caplog.at_level("DEBUG"):
        with running_server(log_level="debug") as url:
            backend = RemoteBackend(url, API_KEY)
            backend.open_session(synthetic_case(0)[0]).close()
            httpx.get(f"{url}/info", headers={"Authorization": f"Bearer {wrong_key}"})
    printed = capfd.readouterr()
    everything = printed.out + printed.err + caplog.text
    assert "GET /info" in everything and "opened session" in everything  # the server did log its requests
    assert API_KEY not in everything and wrong_key not in everything


@pytest.mark.slow
def test_serve_command_serves_the_tiny_model_with_the_key_from_the_environment(tmp_path):
    with served_tiny_model(tmp_path, {**os.environ, "MEDSAM3_API_KEY": API_KEY}) as url:
        assert httpx.get(f"{url}/info").status_code == 401
        assert RemoteBackend(url, API_KEY).info().model == "tiny-random"
    output = (tmp_path / "serve.log").read_text()
    assert "GET /info" in output and API_KEY not in output
