"""The server against a careless or hostile client: one memory budget for all sessions, a bounded cost per
request, work that stops when its client leaves or cancels, the schema behind the key, forwarded headers
believed only from named proxies, finite settings, no secrets or whole session ids in the log, and TLS problems
explained."""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import threading
import time
import zlib

import httpx
import numpy as np
import pytest

from medsam3.transports.backend import LocalBackend
from medsam3.model.bright_region_model import BrightRegionModel
from medsam3.apps.cli import main
from medsam3.interaction.engine import SegmentationEngine
from medsam3.errors import Cancelled, RemoteServerError
from medsam3.transports.remote_client import RemoteBackend
from medsam3.apps.server import ServerSettings
from medsam3.geometry.volume import Volume
from medsam3.transports.wire_format import VOLUME_MAGIC, encode_volume

from server_harness import API_KEY, ORACLE_INFO, FakeClock, running_server, small_volume, write_nifti

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MIB = 1024**2


def declared_zeros(shape: tuple[int, int, int], dtype: str = "float64") -> bytes:
    """A tiny upload that declares a large volume of zeros (1 MB of zlib holds about 1 GB of zeros)."""
    header = json.dumps({"shape": list(shape), "dtype": dtype, "byte_order": "little",
                         "ijk_to_ras": np.eye(4).tolist(), "modality": "CT", "name": "zeros"}).encode()
    compressor = zlib.compressobj(1)
    row = bytes(np.dtype(dtype).itemsize * shape[1] * shape[2])
    voxels = b"".join(compressor.compress(row) for _ in range(shape[0])) + compressor.flush()
    return VOLUME_MAGIC + struct.pack("<I", len(header)) + header + voxels


def upload(url: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/sessions", content=body, headers={**AUTH, "Content-Type": "application/octet-stream"},
                      timeout=60)


def in_use(url: str) -> int:
    return httpx.get(f"{url}/info", headers=AUTH).json()["memory_in_use_bytes"]


# --- 1. one memory budget -----------------------------------------------------------------------------------
def test_declared_zeros_are_held_in_one_byte_per_voxel_and_the_budget_refuses_the_rest():
    settings = ServerSettings(api_key=API_KEY, memory_budget_bytes=96 * MIB, max_sessions=8)
    with running_server(settings=settings) as url:
        baseline = in_use(url)  # the embedding cache's share
        shape = (40, 256, 256)  # 2.6 M voxels: 21 MB as float64, 2.6 MB as uint8
        first = upload(url, declared_zeros(shape))
        assert first.status_code == 201, first.text
        assert in_use(url) - baseline == np.prod(shape)  # kept as uint8
        httpx.delete(f"{url}/sessions/{first.json()['session_id']}", headers=AUTH)
        assert in_use(url) == baseline  # and given back when the session is closed

        # 10 MiB volumes that cannot shrink: each needs 20 MiB while decoding and holds 10 MiB
        answers = []
        while len(answers) < 10 and (not answers or answers[-1].status_code == 201):
            answers.append(upload(url, declared_zeros((40, 512, 512), "uint8")))
            assert in_use(url) <= settings.memory_budget_bytes
        refused = answers[-1]
        assert 3 <= len(answers) - 1 <= 7 and refused.status_code == 429, [a.status_code for a in answers]
        assert "memory" in refused.json()["error"]["message"] and int(refused.headers["Retry-After"]) >= 1

        too_big = upload(url, declared_zeros((200, 512, 512)))  # 420 MB to decode: never fits
        assert too_big.status_code == 413 and "memory budget" in too_big.json()["error"]["message"]
        assert httpx.delete(f"{url}/sessions/{answers[0].json()['session_id']}", headers=AUTH).status_code == 200
        assert upload(url, declared_zeros((40, 512, 512), "uint8")).status_code == 201  # room again


# --- 2. cost per request, disconnects, cancel ------------------------------------------------------------------
class SlowModel(BrightRegionModel):
    """The oracle, taking ``seconds`` per tracked slice and counting them."""

    def __init__(self, seconds: float = 0.15):
        super().__init__(image_size=256, mask_grid=64)
        self.seconds = seconds
        self.tracked = 0

    def track_text(self, frames, text, start_index, reverse):
        for frame in super().track_text(frames, text, start_index, reverse):
            time.sleep(self.seconds)
            self.tracked += 1
            yield frame


def tall_volume(slices: int = 80) -> Volume:
    array = np.full((slices, 16, 16), -1000, np.int16)
    array[:, 4:12, 4:12] = 1000
    return Volume(array, np.eye(4))


def test_cost_of_one_request_is_bounded():
    settings = ServerSettings(api_key=API_KEY, max_phrases=3, max_slice_phrases=100)
    with running_server(settings=settings) as url:
        session = RemoteBackend(url, API_KEY).open_session(tall_volume(80))
        with pytest.raises(RemoteServerError, match="at most 3 per request"):
            session.segment_text("a, b, c, d")
        with pytest.raises(RemoteServerError, match="80 slices x 2 phrase"):
            session.segment_text("a, b")
        assert len(session.segment_text("a, b", slice_index=3)) == 2  # on one slice: 2 slice-phrases
        assert len(session.segment_text("a")) == 1  # 80 slice-phrases


def test_work_stops_when_its_client_disconnects():
    model = SlowModel()
    with running_server(backend=LocalBackend(SegmentationEngine(model), ORACLE_INFO)) as url:
        session_id = upload(url, encode_volume(tall_volume(80))).json()["session_id"]
        with pytest.raises(httpx.ReadTimeout):  # the client gives up after 1 s of a 12 s propagation
            httpx.post(f"{url}/sessions/{session_id}/text", json={"text": "block"}, headers=AUTH, timeout=1.0)
        # the next request on the session waits for the first to end: it ends early
        answer = httpx.post(f"{url}/sessions/{session_id}/text", json={"text": "block", "slice_index": 0},
                            headers=AUTH, timeout=60)
        assert answer.status_code == 200
        assert model.tracked < 40, f"the server tracked {model.tracked} of 80 slices for a client that had gone"


def test_a_client_can_cancel_a_running_propagation():
    model = SlowModel()
    with running_server(backend=LocalBackend(SegmentationEngine(model), ORACLE_INFO)) as url:
        session = RemoteBackend(url, API_KEY).open_session(tall_volume(80))
        with pytest.raises(Cancelled):
            session.segment_text("block", should_stop=lambda: model.tracked >= 5)
        assert model.tracked < 40
        # nothing of the cancelled request was kept: the next object is object 1
        assert session.segment_text("block", slice_index=0)[0].object_id == 1
        session_id = session.session_id
        assert httpx.post(f"{url}/sessions/{session_id}/cancel", headers=AUTH).json()["stopping"] == 0


# --- 7. the schema needs the key -----------------------------------------------------------------------------------
def test_schema_and_docs_need_the_key():
    with running_server() as url:
        assert httpx.get(f"{url}/openapi.json").status_code == 401
        assert httpx.get(f"{url}/docs").status_code in (401, 404)
        assert httpx.get(f"{url}/redoc").status_code in (401, 404)
        schema = httpx.get(f"{url}/openapi.json", headers=AUTH)
        assert schema.status_code == 200 and "/sessions/{session_id}/text" in schema.json()["paths"]
        assert httpx.get(f"{url}/health").status_code == 200


# --- 8. X-Forwarded-For ---------------------------------------------------------------------------------------------
def test_forwarded_for_does_not_bypass_the_rate_limit_unless_from_a_named_proxy():
    clock = FakeClock()
    with running_server(settings=ServerSettings(api_key=API_KEY, requests_per_minute=3), clock=clock) as url:
        statuses = [httpx.get(f"{url}/info", headers={**AUTH, "X-Forwarded-For": f"10.0.0.{n}"}).status_code
                    for n in range(6)]
        assert statuses == [200, 200, 200, 429, 429, 429]
    proxied = ServerSettings(api_key=API_KEY, requests_per_minute=3, trusted_proxies=("127.0.0.1",))
    with running_server(settings=proxied, clock=clock) as url:
        statuses = [httpx.get(f"{url}/info", headers={**AUTH, "X-Forwarded-For": f"10.0.0.{n}"}).status_code
                    for n in range(6)]
        assert statuses == [200] * 6  # behind the operator's proxy, each forwarded client has its own limit


# --- 9. numeric settings -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("arguments", [["--idle-timeout", "nan"], ["--idle-timeout", "inf"],
                                       ["--max-upload-mb", "inf"], ["--max-upload-mb", "-1"],
                                       ["--memory-budget-gb", "nan"], ["--max-sessions", "0"]])
def test_serve_refuses_non_finite_or_out_of_range_numbers_before_loading(capsys, arguments):
    loaded = []
    status = main(["serve", "--api-key", API_KEY, *arguments], backend_factory=lambda *a: loaded.append(a))
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1, error
    assert arguments[0] in error and not loaded


@pytest.mark.parametrize("field", ["idle_timeout_seconds", "memory_budget_bytes", "max_upload_bytes"])
def test_settings_refuse_nan_and_inf(field):
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            ServerSettings(api_key=API_KEY, **{field: value}).check()


# --- 10. secrets and session ids in the log ----------------------------------------------------------------------
def test_a_key_in_the_url_and_whole_session_ids_never_reach_the_log(capfd, caplog):
    secret = "secret-key-sent-in-the-url-by-mistake"
    with caplog.at_level("INFO"):
        with running_server(log_level="info") as url:
            answer = httpx.get(f"{url}/info?api_key={secret}")
            session_id = upload(url, encode_volume(small_volume())).json()["session_id"]
            httpx.post(f"{url}/sessions/{session_id}/objects/1/undo", headers=AUTH)
    printed = capfd.readouterr()
    server_log = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    everything = printed.out + printed.err + "\n".join(server_log)  # the client's own log shows its URLs
    assert answer.status_code == 401 and "not read" in answer.json()["error"]["message"]
    assert "GET /info" in everything and f"/sessions/{session_id[:6]}" in everything
    assert secret not in everything and session_id not in everything


# --- 11. TLS problems named -----------------------------------------------------------------------------------------
def test_missing_certificate_file_is_named_before_the_model_loads(tmp_path, capsys):
    loaded = []
    status = main(["serve", "--api-key", API_KEY, "--ssl-certfile", str(tmp_path / "cert.pem"), "--ssl-keyfile",
                   str(tmp_path / "key.pem")], backend_factory=lambda *a: loaded.append(a))
    error = capsys.readouterr().err.strip()
    assert status == 1 and len(error.splitlines()) == 1
    assert str(tmp_path / "cert.pem") in error and "No such file" in error and not loaded


@pytest.fixture
def self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(certificate)], check=True, capture_output=True)
    return certificate, key


def test_self_signed_server_certificate_says_how_to_trust_it(self_signed, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    image = write_nifti(small_volume(), tmp_path / "ct.nii.gz")
    with running_server(tls=self_signed) as url:
        with pytest.raises(RemoteServerError, match="--ca-file CERT.pem, or set SSL_CERT_FILE"):
            RemoteBackend(url, API_KEY)
        arguments = ["segment", str(image), "--point", "8,8,1", "--ijk", "--slice-only", "--server", url,
                     "--api-key", API_KEY, "-o", str(tmp_path / "mask.nii.gz")]
        assert main(arguments) == 1 and "--ca-file" in capsys.readouterr().err
        assert main(arguments + ["--ca-file", str(self_signed[0])]) == 0, capsys.readouterr().err
    assert (tmp_path / "mask.nii.gz").is_file()
