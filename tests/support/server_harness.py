"""Test support for the command line and the server: the oracle as a backend, ground truth written as image
files (NIfTI and a DICOM series), and the real server running on a loopback port in a thread."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import SimpleITK as sitk
import uvicorn

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.interaction.engine import SegmentationEngine
from medsam3.transports.remote_client import RemoteBackend
from medsam3.apps.server import ServerSettings, create_app
from medsam3.apps.server.runner import uvicorn_config
from medsam3.geometry.volume import Volume
from medsam3.files.volume_io import read_volume, set_image_geometry

from cases import data_path
from oracle import GroundTruthOracle, ground_truth_volume

API_KEY = "test-key-0123456789abcdef"
ORACLE_INFO = BackendInfo(model="ground-truth-oracle", device="cpu", image_size=1008)


def oracle_backend() -> LocalBackend:
    return LocalBackend(SegmentationEngine(GroundTruthOracle()), ORACLE_INFO)


def oracle_backend_factory(model=None, device=None, server_url=None, api_key=None):
    """The command line's backend factory with the oracle in place of the model (a server URL still means the
    real remote transport)."""
    if server_url:
        return RemoteBackend(server_url, api_key)
    return oracle_backend()


def write_nifti(volume: Volume, path: Path) -> Path:
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    set_image_geometry(image, volume.ijk_to_ras)
    sitk.WriteImage(image, str(path))
    return path


def geometry(image_path: Path | str) -> tuple:
    """SimpleITK origin, spacing, direction and size of an image file or DICOM folder."""
    path = Path(image_path)
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(path))
    return image.GetOrigin(), image.GetSpacing(), image.GetDirection(), image.GetSize()


def assert_same_geometry(a: tuple, b: tuple) -> None:
    for left, right in zip(a, b):
        np.testing.assert_allclose(left, right, atol=1e-4)


DICOM_FOLDER = "ct/totalseg_example/dicom_series"


def dicom_spleen_mask() -> tuple[Volume, np.ndarray]:
    """The DICOM series as a Volume and its spleen (label 1), resampled onto the series' voxel grid."""
    volume = read_volume(data_path(DICOM_FOLDER))
    reference = sitk.GetImageFromArray(np.zeros(volume.array.shape, np.uint8))
    set_image_geometry(reference, volume.ijk_to_ras)
    labels = sitk.ReadImage(str(data_path("ct/totalseg_example/dicom_series_seg_v2.nii.gz")))
    on_grid = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return volume, sitk.GetArrayFromImage(on_grid) == 1


def write_ground_truth_dicom(mask: np.ndarray, folder: Path) -> Path:
    """A copy of the DICOM series whose pixels are the ground truth as image (1000 HU inside, -1000 outside),
    every header kept, so the geometry is the original's."""
    import pydicom

    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(data_path(DICOM_FOLDER)))  # in slice order, k = 0, 1, ...
    folder.mkdir(parents=True, exist_ok=True)
    for k, file in enumerate(files):
        dataset = pydicom.dcmread(file)
        slope = float(getattr(dataset, "RescaleSlope", 1))
        intercept = float(getattr(dataset, "RescaleIntercept", 0))
        stored_type = np.int16 if int(dataset.PixelRepresentation) else np.uint16
        hounsfield = np.where(mask[k], 1000.0, -1000.0)
        dataset.PixelData = np.round((hounsfield - intercept) / slope).astype(stored_type).tobytes()
        dataset["PixelData"].VR = "OW"
        dataset["PixelData"].is_undefined_length = False
        dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian  # the originals are JPEG 2000
        dataset.save_as(folder / Path(file).name)
    return folder


def spleen_ground_truth_nifti(folder: Path) -> tuple[Path, Volume, np.ndarray]:
    from cases import load_case

    case = load_case("spleen")
    path = write_nifti(ground_truth_volume(case.volume, case.mask), folder / "spleen_ground_truth.nii.gz")
    return path, case.volume, case.mask


@contextmanager
def running_server(backend=None, settings: ServerSettings | None = None, clock=time.monotonic,
                   log_level: str = "warning", tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """The real server (uvicorn) on a free loopback port in a thread; yields its URL. ``tls``: (certificate,
    key) PEM files to serve HTTPS."""
    settings = settings or ServerSettings(api_key=API_KEY)
    app = create_app(backend or oracle_backend(), settings, clock=clock)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    certificate, key = (str(tls[0]), str(tls[1])) if tls else (None, None)
    server = uvicorn.Server(uvicorn_config(app, settings, certificate, key, log_level=log_level, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def small_volume(value: int = 0) -> Volume:
    """A 4 x 16 x 16 CT with one bright block: enough for a session, cheap to upload."""
    array = np.full((4, 16, 16), -1000, np.int16)
    array[1:3, 4:12, 4:12] = 1000 + value
    return Volume(array, np.diag([1.0, 1.0, 2.0, 1.0]))


def mask_colour_pixels(png: Path, name: str, segment_index: int = 0) -> int:
    """How many pixels of an overlay picture are in the colour of a segment's outline: the colour its files give the
    segment named ``name`` (the terminology's, or the engine's palette colour of its position for an unknown name)."""
    from PIL import Image

    from medsam3.files.outputs import coded_segment

    colour = [int(c * 255 + 0.5) for c in coded_segment(name, segment_index).colour]
    picture = np.asarray(Image.open(png).convert("RGB"))
    return int(np.all(picture == colour, axis=-1).sum())


class FakeClock:
    """A monotonic clock the test moves by hand (idle timeouts and rate limits without waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def served_tiny_model(tmp_path: Path, environment: dict):
    """`medsam3 serve --model tiny-random` in its own process (see :func:`served_model`)."""
    return served_model(tmp_path, environment, "tiny-random")


@contextmanager
def served_model(tmp_path: Path, environment: dict, model: "str | Path") -> Iterator[str]:
    """`medsam3 serve --model MODEL` as a user starts it (the console script, its own process) on a free
    loopback port; yields its URL once /health answers. Its output goes to ``tmp_path / "serve.log"``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen([str(Path(sys.executable).with_name("medsam3")), "serve", "--model", str(model),
                                "--device", "cpu", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
