"""Backends for the batch tests, importable by Ray workers too (the tests put this folder on their path).

``oracle_backend_factory`` is the command line's backend factory with the ground-truth oracle (bright-region
model) in place of a network: fast, and its masks are not empty on real CTs. ``DiesOnceOnCase`` is the same
backend in a worker process that is killed (SIGKILL, as the kernel's out-of-memory killer does) the first time it
starts segmenting a given case.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.model.bright_region_model import BrightRegionModel
from medsam3.interaction.engine import SegmentationEngine

ORACLE_INFO = BackendInfo(model="ground-truth-oracle", device="cpu", image_size=1008)


def oracle_backend_factory(model=None, device=None, server_url=None, api_key=None) -> LocalBackend:
    return LocalBackend(SegmentationEngine(BrightRegionModel()), ORACLE_INFO)


class _DyingBackend:
    def __init__(self, backend: LocalBackend, marker: Path, volume_name: str):
        self.backend, self.marker, self.volume_name = backend, marker, volume_name

    def info(self) -> BackendInfo:
        return self.backend.info()

    def open_session(self, volume, preprocessing=None):
        if volume.name.startswith(self.volume_name):
            try:
                with open(self.marker, "x") as stream:  # only the first worker to get here dies
                    stream.write(str(os.getpid()))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.backend.open_session(volume, preprocessing)


class DiesOnceOnCase:
    """A backend factory whose process is killed when it first opens a session on a volume named ``volume_name``
    (``marker`` records that it happened, and the pid that died)."""

    def __init__(self, marker: Path, volume_name: str):
        self.marker, self.volume_name = Path(marker), volume_name

    @property
    def loads(self) -> Path:
        """One line per model load: the pid of the process that loaded it."""
        return self.marker.with_name(self.marker.name + ".loads")

    def __call__(self, model=None, device=None, server_url=None, api_key=None):
        with open(self.loads, "a") as stream:
            stream.write(f"{os.getpid()}\n")
        return _DyingBackend(oracle_backend_factory(), self.marker, self.volume_name)


def bright_voxel(volume) -> tuple[int, int, int]:
    """(i, j, k) of a bright voxel on the middle slice (bright: the oracle segments the bright region there)."""
    k = volume.array.shape[0] // 2
    plane = volume.array[k].astype(float)
    j, i = np.unravel_index(np.argmin(np.abs(plane - np.percentile(plane, 97))), plane.shape)
    return int(i), int(j), k
