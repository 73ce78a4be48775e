"""A bounded stress run of the server's memory budget (issue 10): the server in its own process on loopback, 8
clients uploading volumes that declare the largest size the server accepts (float64 zeros: a few hundred KB of
zlib each, the amplification a hostile client would use) while other clients segment their own volumes. The
server's resident memory is sampled throughout. With ``hostile`` (issue 18), one client for each attack runs
alongside: 300 MiB bodies without a key (H-2), mask boxes with an empty side carrying a zlib bomb (H-3), and
uploads that stall after their first MiB (M-6).

Run by tests/apps/server/test_server_stress.py; run it by hand for the figures:
    PYTHONPATH=MedicalSAM3Slicer python tests/support/memory_stress.py
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

MIB = 1024**2
API_KEY = "stress-key-0123456789abcdef"
HERE = Path(__file__).resolve().parent

# The server under test: a budget small enough that 8 uploaders at the declared maximum exceed it many times over.
SETTINGS = dict(api_key=API_KEY, memory_budget_bytes=320 * MIB, max_voxels=32 * 512 * 512, max_sessions=32,
                max_upload_bytes=4 * MIB, requests_per_minute=1_000_000,  # every client shares 127.0.0.1
                read_timeout_seconds=2.0, header_timeout_seconds=2.0)


@dataclass
class Figures:
    baseline_rss_bytes: int = 0
    peak_rss_bytes: int = 0  # the kernel's high-water mark (VmHWM) over the run, reset after the baseline
    budget_bytes: int = SETTINGS["memory_budget_bytes"]
    statuses: Counter = field(default_factory=Counter)
    refusals_without_reason: list = field(default_factory=list)
    transport_errors: list = field(default_factory=list)
    wrong_masks: list = field(default_factory=list)
    masks_checked: int = 0
    seconds: float = 0.0  # the clients' run, from their start to the last one's end
    startup_seconds: float = 0.0  # the server's start and warm-up (imports torch; slow on a busy machine)

    @property
    def answered(self) -> int:
        return sum(n for status, n in self.statuses.items() if status < 400)

    @property
    def refused(self) -> int:
        return sum(n for status, n in self.statuses.items() if 400 <= status < 500)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def peak_growth_bytes(self) -> int:
        return self.peak_rss_bytes - self.baseline_rss_bytes

    def summary(self) -> str:
        kinds = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        return (f"stress: clients ran {self.seconds:.1f} s (server start {self.startup_seconds:.1f} s); server RSS {self.baseline_rss_bytes / MIB:.0f} MiB at rest, peak "
                f"{self.peak_rss_bytes / MIB:.0f} MiB (+{self.peak_growth_bytes / MIB:.0f} MiB; budget "
                f"{self.budget_bytes / MIB:.0f} MiB); answered {self.answered}, refused {self.refused} "
                f"(4xx), 5xx {self.server_errors}; masks checked {self.masks_checked}; by status {{{kinds}}}")


# --- the server, in its own process ---------------------------------------------------------------------------------
def serve() -> None:
    """Child process: the real server with the ground-truth oracle (at 256 px, so a propagation takes well under
    a second); prints its port, serves until killed."""
    sys.path.insert(0, str(HERE))
    import torch
    import uvicorn

    from medsam3.transports.backend import BackendInfo, LocalBackend
    from medsam3.model.bright_region_model import BrightRegionModel
    from medsam3.interaction.engine import SegmentationEngine
    from medsam3.apps.server import ServerSettings, create_app
    from medsam3.apps.server.runner import uvicorn_config

    torch.set_num_threads(1)  # a shared CI machine
    settings = ServerSettings(**json.loads(sys.argv[2]))
    app = create_app(LocalBackend(SegmentationEngine(BrightRegionModel(256, 64)),
                                    BackendInfo(model="ground-truth-oracle", device="cpu", image_size=256)), settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn_config(app, settings, log_level="warning")).run(sockets=[sock])


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(name)


# --- the clients ---------------------------------------------------------------------------------------------------
def declared_maximum_upload(voxels: int) -> bytes:
    """A volume of float64 zeros with exactly ``voxels`` voxels (the largest the server accepts), zlib-packed."""
    from medsam3.transports.wire_format import VOLUME_MAGIC

    shape = (voxels // (512 * 512), 512, 512)
    header = json.dumps({"shape": list(shape), "dtype": "float64", "byte_order": "little",
                         "ijk_to_ras": np.eye(4).tolist(), "modality": "CT", "name": "declared-maximum"}).encode()
    compressor = zlib.compressobj(1)
    row = bytes(8 * 512 * 512)
    voxels_data = b"".join(compressor.compress(row) for _ in range(shape[0])) + compressor.flush()
    return VOLUME_MAGIC + struct.pack("<I", len(header)) + header + voxels_data


def prompter_case(index: int):
    """A small CT with a bright ellipsoid (the oracle's ground truth) and a click inside it."""
    from medsam3.geometry.volume import Volume
    from oracle import ground_truth_volume

    k, j, i = np.mgrid[:40, :64, :64]
    truth = ((k - 20) / 12.0) ** 2 + ((j - 30 - index) / 14.0) ** 2 + ((i - 34) / 16.0) ** 2 <= 1.0
    volume = ground_truth_volume(Volume(np.zeros(truth.shape, np.int16), np.diag([0.8, 0.8, 2.5, 1.0])), truth)
    return volume, truth, (34.0, 30.0 + index, 20.0)


def zlib_bomb_bits(inflated: int = 1024 * MIB) -> str:
    """About 1 MiB of base64 that inflates to ``inflated`` bytes of zeros."""
    import base64

    compressor = zlib.compressobj(9)
    block = bytes(MIB)
    data = b"".join(compressor.compress(block) for _ in range(inflated // MIB)) + compressor.flush()
    return base64.b64encode(data).decode("ascii")


def stalled_upload(url: str, declared: int, sent: int, wait: float = 60.0) -> int:
    """An upload that declares ``declared`` bytes, sends ``sent`` and then nothing: the status it gets."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as connection:
        connection.sendall(f"POST /sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
                           f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n".encode()
                           + bytes(sent))
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                return 0  # closed without an answer
            answer += chunk
        return int(answer.split()[1])


def run_stress(load_seconds: float = 20.0, uploaders: int = 8, prompters: int = 4, hostile: bool = False) -> Figures:
    """Start the server, run the clients for ``load_seconds``, stop the server; the figures."""
    sys.path.insert(0, str(HERE))
    from medsam3.transports.wire_format import encode_volume, mask_update_from_message

    figures = Figures()
    lock = threading.Lock()
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE.parents[1] / "MedicalSAM3Slicer"), str(HERE), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, __file__, "serve", json.dumps(SETTINGS)], stdout=subprocess.PIPE,
                              env=environment, text=True)
    started = time.monotonic()
    try:
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        auth = {"Authorization": f"Bearer {API_KEY}"}
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        body = declared_maximum_upload(SETTINGS["max_voxels"])
        cases = [prompter_case(n) for n in range(max(prompters, 1))]
        uploads = [encode_volume(volume) for volume, _, _ in cases]
        # warm up (what the first requests import and start: torch, thread pools), then the baseline, then reset
        # the high-water mark
        from medsam3.interaction.prompts import PointPrompt, SlicePrompt
        from medsam3.transports.wire_format import prompt_to_message

        click_message = [prompt_to_message(SlicePrompt("axial", points=(PointPrompt(click),)))
                         for _, _, click in cases]
        warm = httpx.post(f"{url}/sessions", content=uploads[0], headers=auth, timeout=60).json()["session_id"]
        httpx.post(f"{url}/sessions/{warm}/prompts", headers=auth, timeout=60,
                   json={"object_id": 1, "prompt": click_message[0], "whole_volume": True}).raise_for_status()
        httpx.delete(f"{url}/sessions/{warm}", headers=auth)
        bomb = zlib_bomb_bits() if hostile else ""  # 1.4 MB of base64, 1 GiB inflated
        box_session = httpx.post(f"{url}/sessions", content=uploads[0], headers=auth, timeout=60).json()["session_id"]
        figures.baseline_rss_bytes = _status_field(server.pid, "VmRSS")
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
        figures.startup_seconds = time.monotonic() - started
        started = time.monotonic()
        stop_at = started + load_seconds

        def record(response: httpx.Response | int) -> None:
            if isinstance(response, int):  # a raw-socket client's status
                with lock:
                    figures.statuses[response] += 1
                return
            with lock:
                figures.statuses[response.status_code] += 1
                if response.status_code >= 400:
                    try:
                        message = response.json()["error"]["message"]
                    except (ValueError, KeyError, TypeError):
                        message = ""
                    if not message or (response.status_code == 429 and "Retry-After" not in response.headers):
                        figures.refusals_without_reason.append((response.status_code, response.text[:200]))

        def guarded(client):
            def run(*arguments):
                try:
                    client(*arguments)
                except (httpx.HTTPError, OSError) as error:
                    with lock:
                        figures.transport_errors.append(repr(error))
            return run

        @guarded
        def uploader(index: int) -> None:
            held: list[str] = []
            with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
                while time.monotonic() < stop_at:
                    answer = http.post("/sessions", content=body,
                                       headers={"Content-Type": "application/octet-stream"})
                    record(answer)
                    if answer.status_code == 201:
                        held.append(answer.json()["session_id"])
                    elif answer.status_code == 429:
                        time.sleep(min(float(answer.headers.get("Retry-After", 1)), 0.5))  # an impatient client
                    if len(held) > 2 or (held and answer.status_code != 201):
                        record(http.delete(f"/sessions/{held.pop(0)}"))
                for session_id in held:
                    record(http.delete(f"/sessions/{session_id}"))

        @guarded
        def prompter(index: int) -> None:
            volume, truth, click = cases[index]
            with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
                session_id = None
                while time.monotonic() < stop_at:
                    if session_id is None:
                        answer = http.post("/sessions", content=uploads[index])
                        record(answer)
                        if answer.status_code != 201:
                            time.sleep(0.2)
                            continue
                        session_id = answer.json()["session_id"]
                        mask = np.zeros(truth.shape, bool)  # the client's copy of the object, kept as Slicer keeps it
                    answer = http.post(f"/sessions/{session_id}/prompts", json={
                        "object_id": 1, "prompt": click_message[index], "whole_volume": True})
                    record(answer)
                    if answer.status_code == 200:
                        # an update is the changed region: after a reset the budget refused, it is empty
                        mask_update_from_message(answer.json()).apply_to(mask)
                        overlap = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
                        with lock:
                            figures.masks_checked += 1
                            if overlap < 0.95:
                                figures.wrong_masks.append(float(overlap))
                        reset = http.post(f"/sessions/{session_id}/objects/1/reset")
                        record(reset)
                        if reset.status_code == 200:
                            mask_update_from_message(reset.json()).apply_to(mask)
                    elif answer.status_code == 404:
                        session_id = None
                    else:
                        time.sleep(0.2)
                if session_id is not None:
                    record(http.delete(f"/sessions/{session_id}"))

        def chunks(total: int):
            block = bytes(MIB)
            for _ in range(total // MIB):
                yield block

        @guarded
        def without_key(index: int) -> None:  # H-2: big JSON bodies, no key
            with httpx.Client(base_url=url, timeout=60) as http:
                while time.monotonic() < stop_at:
                    record(http.post("/sessions/some-session/prompts", content=chunks(300 * MIB),
                                     headers={"Content-Type": "application/json"}))

        @guarded
        def empty_box(index: int) -> None:  # H-3: a zlib bomb in a box with an empty side
            bits = bomb
            with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
                session_id = box_session  # opened before the load: the uploaders keep the budget full
                while time.monotonic() < stop_at:
                    if session_id is None:
                        answer = http.post("/sessions", content=uploads[0])
                        record(answer)
                        session_id = answer.json()["session_id"] if answer.status_code == 201 else None
                        if session_id is None:
                            time.sleep(0.2)
                        continue
                    answer = http.put(f"/sessions/{session_id}/objects/1/mask", json={"box": [0, 0, 0, 64, 0, 64],
                                                                                     "bits": bits})
                    record(answer)
                    if answer.status_code == 404:
                        session_id = None
                if session_id is not None:
                    record(http.delete(f"/sessions/{session_id}"))

        @guarded
        def stalling(index: int) -> None:  # M-6: declares the largest upload, sends 1 MiB, stalls
            while time.monotonic() < stop_at:
                status = stalled_upload(url, SETTINGS["max_upload_bytes"], MIB)
                if status:
                    record(status)
                else:
                    with lock:
                        figures.transport_errors.append("a stalled upload was closed without an answer")

        threads = [threading.Thread(target=uploader, args=(n,)) for n in range(uploaders)]
        if hostile:
            threads += [threading.Thread(target=client, args=(0,)) for client in (without_key, empty_box, stalling)]
        threads += [threading.Thread(target=prompter, args=(n,)) for n in range(prompters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=load_seconds + 120)
        figures.seconds = time.monotonic() - started
        figures.peak_rss_bytes = _status_field(server.pid, "VmHWM")
        assert server.poll() is None, "the server process died"
    finally:
        server.terminate()
        server.wait(timeout=30)
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve()
    else:
        print(run_stress(hostile="--hostile" in sys.argv).summary())
