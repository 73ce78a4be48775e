"""Every server limit and every kind of bad input is answered with its 4xx and a JSON message, on the real
server: upload size, voxel count, rate, session cap, idle timeout, client version, corrupt uploads."""

from __future__ import annotations

import json
import struct
import time
import zlib

import httpx
import numpy as np
import pytest

import medsam3.transports.remote_client
from medsam3.interaction.prompts import PointPrompt, SlicePrompt
from medsam3.errors import RemoteServerError, VersionMismatchError
from medsam3.transports.remote_client import RemoteBackend
from medsam3.apps.server import ServerSettings
from medsam3.geometry.volume import Volume
from medsam3.transports.wire_format import encode_volume

from server_harness import API_KEY, FakeClock, running_server, small_volume

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def upload(url: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/sessions", content=body, headers={**AUTH, "Content-Type": "application/octet-stream"})


def error_of(response: httpx.Response) -> str:
    return response.json()["error"]["message"]


def test_upload_larger_than_the_limit_is_413():
    with running_server(settings=ServerSettings(api_key=API_KEY, max_upload_bytes=2000)) as url:
        big = Volume(np.random.default_rng(0).integers(-1000, 1000, (8, 32, 32)).astype(np.int16), np.eye(4))
        response = upload(url, encode_volume(big))
        assert response.status_code == 413 and "upload limit" in error_of(response)
        chunked = httpx.post(f"{url}/sessions", content=iter([encode_volume(big)]), headers=AUTH)
        assert chunked.status_code == 413
        with pytest.raises(RemoteServerError, match="upload limit"):
            RemoteBackend(url, API_KEY).open_session(big)
        assert upload(url, encode_volume(small_volume())).status_code == 201


def test_volume_with_too_many_voxels_is_413():
    with running_server(settings=ServerSettings(api_key=API_KEY, max_voxels=500)) as url:
        response = upload(url, encode_volume(small_volume()))
        assert response.status_code == 413
        assert "1,024 voxels" in error_of(response) and "at most 500" in error_of(response)


def test_too_many_requests_is_429_until_the_bucket_refills():
    clock = FakeClock()
    with running_server(settings=ServerSettings(api_key=API_KEY, requests_per_minute=3), clock=clock) as url:
        statuses = [httpx.get(f"{url}/info", headers=AUTH).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = httpx.get(f"{url}/info", headers=AUTH)
        assert "3 per minute" in error_of(limited) and int(limited.headers["Retry-After"]) >= 1
        clock.advance(20)
        assert httpx.get(f"{url}/info", headers=AUTH).status_code == 200


def test_session_cap_closes_the_session_idle_the_longest():
    clock = FakeClock()
    with running_server(settings=ServerSettings(api_key=API_KEY, max_sessions=2), clock=clock) as url:
        backend = RemoteBackend(url, API_KEY)
        first = backend.open_session(small_volume(1))
        clock.advance(1)
        second = backend.open_session(small_volume(2))
        clock.advance(1)
        first.add_prompt(1, SlicePrompt("axial", points=(PointPrompt((8, 8, 1)),)))  # first is now the fresher
        clock.advance(1)
        third = backend.open_session(small_volume(3))

        with pytest.raises(RemoteServerError, match="limit of 2 sessions"):
            second.undo(1)
        assert first.undo(1).object_id == 1
        assert not third.add_prompt(1, SlicePrompt("axial", points=(PointPrompt((8, 8, 2)),))).is_empty


def test_idle_session_is_closed_after_the_timeout():
    clock = FakeClock()
    with running_server(settings=ServerSettings(api_key=API_KEY, idle_timeout_seconds=60), clock=clock) as url:
        session = RemoteBackend(url, API_KEY).open_session(small_volume())
        clock.advance(30)
        assert not session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt((8, 8, 1)),))).is_empty
        clock.advance(61)
        with pytest.raises(RemoteServerError, match="idle for more than 60 s"):
            session.undo(1)
        assert httpx.get(f"{url}/info", headers=AUTH).json()["open_sessions"] == 0


def test_idle_sessions_are_freed_without_any_request_on_them():
    clock = FakeClock()
    with running_server(settings=ServerSettings(api_key=API_KEY, idle_timeout_seconds=2), clock=clock) as url:
        RemoteBackend(url, API_KEY).open_session(small_volume())
        assert httpx.get(f"{url}/info", headers=AUTH).json()["open_sessions"] == 1
        clock.advance(10)
        for _ in range(300):  # the server's own sweep runs every second here
            if httpx.get(f"{url}/info", headers=AUTH).json()["open_sessions"] == 0:
                break
            time.sleep(0.1)
        assert httpx.get(f"{url}/info", headers=AUTH).json()["open_sessions"] == 0


def test_client_of_another_version_is_told_which_versions_match(monkeypatch):
    with running_server() as url:
        response = httpx.get(f"{url}/info", headers={**AUTH, "X-MedSam3-Client-Version": "9.9.0"})
        assert response.status_code == 426
        assert "clients 0.1.x" in error_of(response) and "9.9.0" in error_of(response)
        monkeypatch.setattr(medsam3.transports.remote_client, "__version__", "0.7.2")
        with pytest.raises(VersionMismatchError, match=r"works with clients 0\.1\.x.*0\.7\.2"):
            RemoteBackend(url, API_KEY)


def _body(header: dict, voxels: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return b"MSV1" + struct.pack("<I", len(encoded)) + encoded + zlib.compress(voxels)


GOOD_HEADER = {"shape": [2, 4, 4], "dtype": "int16", "ijk_to_ras": np.eye(4).tolist(), "modality": "CT"}


@pytest.mark.parametrize("body, status, says", [
    (b"", 400, "not a medsam3 volume"),
    (b"GIF89a........", 400, "not a medsam3 volume"),
    (b"MSV1\xff\xff\xff\x00{}", 400, "truncated"),
    (_body({**GOOD_HEADER, "dtype": "complex64"}, bytes(256)), 400, "not accepted"),
    (_body({**GOOD_HEADER, "shape": [2, 4]}, bytes(64)), 400, "shape"),
    (_body(GOOD_HEADER, bytes(10)), 400, "declares"),
    (_body(GOOD_HEADER, bytes(10_000)), 400, "does not match"),
    (_body(GOOD_HEADER, bytes(64))[:-5], 400, "truncated"),
    (_body({**GOOD_HEADER, "ijk_to_ras": np.zeros((4, 4)).tolist()}, bytes(64)), 422, "singular"),
    (_body({**GOOD_HEADER, "modality": "PET"}, bytes(64)), 400, "modality"),
])
def test_corrupt_uploads_are_4xx_and_other_sessions_carry_on(body, status, says):
    with running_server() as url:
        session = RemoteBackend(url, API_KEY).open_session(small_volume())
        response = upload(url, body)
        assert response.status_code == status and says in error_of(response), response.text
        assert not session.add_prompt(1, SlicePrompt("axial", points=(PointPrompt((8, 8, 1)),))).is_empty


def test_unknown_session_and_bad_messages_are_4xx():
    with running_server() as url:
        missing = httpx.post(f"{url}/sessions/nope/objects/1/undo", headers=AUTH)
        assert missing.status_code == 404 and "no session nope" in error_of(missing)
        session_id = upload(url, encode_volume(small_volume())).json()["session_id"]
        bad_point = httpx.post(f"{url}/sessions/{session_id}/prompts", headers=AUTH, json={
            "object_id": 1, "prompt": {"axis": "axial", "points": [{"ijk": [1, 2]}]}})
        assert bad_point.status_code == 422 and "ijk" in error_of(bad_point)
        bad_mask = httpx.put(f"{url}/sessions/{session_id}/objects/1/mask", headers=AUTH,
                             json={"box": [0, 9, 0, 4, 0, 4], "bits": "AAAA"})
        assert bad_mask.status_code == 422 and "does not fit" in error_of(bad_mask)
        not_base64 = httpx.put(f"{url}/sessions/{session_id}/objects/1/mask", headers=AUTH,
                               json={"box": [0, 1, 0, 4, 0, 4], "bits": "%%%"})
        assert not_base64.status_code == 400
