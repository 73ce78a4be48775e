"""`medsam3 web` as a user starts it (the console command, on a loopback port), and the phantom it is tested on.

The phantom is a CT-like volume with two bright blocks, for the bright-region stand-in model (the stand-in the
bridge's placement tests and the module's self-test use): the model segments exactly the bright block under a
prompt, so any misplaced click or transposed axis between the page, the slice views, the bridge and the engine
shows up as a mask in the wrong place.
"""

from __future__ import annotations

import hashlib
import io
import json
import locale
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[3]
MODULE_DIR = ROOT / "MedicalSAM3Slicer"
READY = re.compile(r"medsam3 web: ready in ([0-9.]+) s at (http://[^ /]+/)")
START_TIMEOUT_SECONDS = 180  # a cold start on a busy 2-core machine (usually 5-15 s)

SHAPE_KJI = (40, 64, 64)
UPPER_BLOCK = (slice(16, 25), slice(20, 34), slice(10, 24))  # (k, j, i): crosses the middle axial slice
LOWER_BLOCK = (slice(2, 9), slice(26, 40), slice(40, 54))  # inferior, right of it: not on the middle axial slice


@dataclass
class Phantom:
    path: Path
    upper: np.ndarray  # (K, J, I) bool
    lower: np.ndarray


def write_phantom(folder: Path) -> Phantom:
    voxels = np.full(SHAPE_KJI, -1000, dtype=np.int16)
    voxels[UPPER_BLOCK] = 1000
    voxels[LOWER_BLOCK] = 1000
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((2.0, 2.0, 3.0))
    path = folder / "phantom.nii.gz"
    sitk.WriteImage(image, str(path))
    upper, lower = np.zeros(SHAPE_KJI, bool), np.zeros(SHAPE_KJI, bool)
    upper[UPPER_BLOCK] = True
    lower[LOWER_BLOCK] = True
    return Phantom(path, upper, lower)


def write_dicom_phantom(folder: Path, frame_of_reference: bool = True) -> Phantom:
    """The phantom as a CT DICOM series (one file per axial slice, SimpleITK's GDCM writer), as a scanner folder;
    ``frame_of_reference=False`` leaves out the Frame of Reference UID, as some anonymisers do."""
    voxels = np.full(SHAPE_KJI, -1000, dtype=np.int16)
    voxels[UPPER_BLOCK] = 1000
    voxels[LOWER_BLOCK] = 1000
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((2.0, 2.0, 3.0))
    folder.mkdir(parents=True, exist_ok=True)
    text_locale = locale.setlocale(locale.LC_CTYPE)
    try:
        _write_series(image, folder, frame_of_reference)
    finally:  # GDCM's writer sets the C locale: later text files in this process would default to ASCII
        locale.setlocale(locale.LC_CTYPE, text_locale)
    upper, lower = np.zeros(SHAPE_KJI, bool), np.zeros(SHAPE_KJI, bool)
    upper[UPPER_BLOCK] = True
    lower[LOWER_BLOCK] = True
    return Phantom(folder, upper, lower)


def _write_series(image, folder: Path, frame_of_reference: bool) -> None:
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    study, series = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    for k in range(SHAPE_KJI[0]):
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0008|0060", "CT"), ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"),
                           ("0008|0018", f"{series}.{k + 1}"), ("0020|000d", study), ("0020|000e", series),
                           ("0010|0010", "Phantom^Web"), ("0010|0020", "WEB-PHANTOM"), ("0020|0010", "1"),
                           ("0008|0020", "20260101"), ("0008|0030", "120000"), ("0008|0050", "1"),
                           ("0020|0011", "3"), ("0008|103e", "phantom CT"), ("0020|0013", str(k + 1)),
                           ("0020|0032", "\\".join(f"{v:g}" for v in position)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", "3"), ("0028|0030", "2\\2"),
                           ("0028|1052", "0"), ("0028|1053", "1")):
            plane.SetMetaData(tag, value)
        if frame_of_reference:
            plane.SetMetaData("0020|0052", "1.2.826.0.1.3680043.8.498.3")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)


@dataclass
class RunningWeb:
    url: str
    process: subprocess.Popen
    ready_seconds: float
    log: Path
    key: str | None = None  # the page's key (--api-key), sent as ?key= by state()

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
        request = urllib.request.Request(self.url + path.lstrip("/"), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def state(self) -> dict:
        status, body, _ = self.get("medsam3/state" + (f"?key={self.key}" if self.key else ""))
        assert status == 200, body
        return json.loads(body)

    def wait_for_state(self, condition, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if not state["busy"] and condition(state):
                return state
            assert time.monotonic() < deadline, f"the scene never reached the expected state: {state}"
            time.sleep(0.05)


def web_command(*arguments: str) -> list[str]:
    """The console command `medsam3 web ...` (the engine's command line, which starts the web program)."""
    return [sys.executable, "-c", "import sys; from medsam3.apps.cli import main; sys.exit(main())", "web",
            *arguments]


def web_environment() -> dict:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(MODULE_DIR), environment.get("PYTHONPATH")) if p)
    return environment


@contextmanager
def running_web(tmp_path: Path, *arguments: str, key: str | None = None):
    """Start `medsam3 web ARGUMENTS --port 0` (and ``--api-key KEY``) and yield once it says it is ready; stop it
    afterwards."""
    arguments = (*arguments, "--api-key", key) if key else arguments
    log = tmp_path / "medsam3-web.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(web_command(*arguments, "--port", "0"), stdout=subprocess.PIPE,
                                   stderr=output, env=web_environment(), cwd=tmp_path)
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            line = b""
            while time.monotonic() < deadline:
                line = process.stdout.readline()
                if not line and process.poll() is not None:
                    break
                match = READY.search(line.decode(errors="replace"))
                if match:
                    threading.Thread(target=process.stdout.read, daemon=True).start()  # never let the pipe fill
                    yield RunningWeb(match.group(2), process, float(match.group(1)), log, key)
                    return
            raise AssertionError(f"medsam3 web did not start (exit {process.poll()}): {log.read_text()[-2000:]}")
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- what the browser shows, and the files it downloads ------------------------------------------------------
def view_pixels(view) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(view.screenshot())).convert("RGB")).astype(int)


def unsegmented_blocks(rgb: np.ndarray) -> list[tuple[float, float]]:
    """Centres (y, x) of the white, not yet coloured, blocks a view shows, top to bottom."""
    from scipy import ndimage

    white = rgb.min(axis=2) > 200
    labels, count = ndimage.label(white)
    sizes = ndimage.sum(white, labels, range(1, count + 1))
    centres = ndimage.center_of_mass(white, labels, range(1, count + 1))
    return sorted(centre for centre, size in zip(centres, sizes) if size > 200)  # not the view's lettering


def mask_from_seg_nrrd(path: Path, source: Path) -> np.ndarray:
    """The file's first segment on the source image's grid (Slicer may store a cropped extent with its own origin)."""
    from medsam3.files.seg_nrrd import read_seg_nrrd
    from medsam3.files.volume_io import read_volume

    labels, grid = read_seg_nrrd(path).labels, read_volume(source)
    assert np.allclose(labels.ijk_to_ras[:3, :3], grid.ijk_to_ras[:3, :3])  # same axes and spacing
    offset = np.linalg.solve(grid.ijk_to_ras, labels.ijk_to_ras @ np.array([0, 0, 0, 1.0]))[:3]
    i0, j0, k0 = (int(round(v)) for v in offset)
    full = np.zeros(grid.array.shape, dtype=bool)
    k, j, i = labels.array.shape
    full[k0:k0 + k, j0:j0 + j, i0:i0 + i] = labels.array == 1
    return full


def sha(mask: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(mask.astype(bool)).tobytes()).hexdigest()


CHROMIUM = Path("/usr/bin/chromium")


def playwright_or_skip():
    """Playwright's sync API for a browser test module, or that module skipped in one line naming what is missing
    (Playwright from requirements/web.txt, Debian's chromium from apt: scripts/setup_env.sh installs both)."""
    import pytest

    api = pytest.importorskip(
        "playwright.sync_api", reason="web browser test skipped: Playwright is not installed (requirements/web.txt; "
                                      "scripts/setup_env.sh installs it)")
    if not CHROMIUM.exists():
        pytest.skip("web browser test skipped: Debian chromium is missing at /usr/bin/chromium (scripts/setup_env.sh "
                    "installs it with apt-get when run as root)", allow_module_level=True)
    return api
