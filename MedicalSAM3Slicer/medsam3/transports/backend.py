"""One interface, two transports: where segmentation sessions run.

A :class:`SegmentationBackend` opens :class:`SegmentationSession`-like sessions on volumes. The in-process
:class:`LocalBackend` runs the engine in this Python process; ``medsam3.transports.remote_client.RemoteBackend`` runs the
same sessions on a server (the volume is uploaded once per session, prompts are small messages and only the
changed region of a mask comes back). The Slicer module and the command line talk only to this interface.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from ..interaction.engine import Progress, SegmentationEngine, StopRequested
from ..model.preprocessing import Preprocessing
from ..interaction.prompts import SlicePrompt
from ..interaction.session import MaskUpdate, SegmentationSession
from ..geometry.slicing import SliceAxis
from ..geometry.volume import Volume


@dataclass(frozen=True)
class BackendInfo:
    """What a user or a support engineer needs to know about where inference runs."""

    model: str
    device: str
    image_size: int
    transport: str = "in-process"
    engine_version: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


class Session(Protocol):
    """The calls a client makes on one volume (implemented by SegmentationSession and the remote session).

    ``progress`` and ``should_stop`` follow and stop a propagation; the remote transport stops by asking the server
    to cancel, and answers a request as a whole (no progress).
    """

    def add_prompt(self, object_id: int, prompt: SlicePrompt, whole_volume: bool = False,
                   target_text: str = "", progress: Progress | None = None,
                   should_stop: StopRequested | None = None) -> MaskUpdate: ...

    def segment_text(self, text: str, axis: SliceAxis | str = SliceAxis.AXIAL, slice_index: int | None = None,
                     score_threshold: float = 0.5, progress: Progress | None = None,
                     should_stop: StopRequested | None = None) -> list[MaskUpdate]: ...

    def mask(self, object_id: int) -> np.ndarray: ...

    def set_mask(self, object_id: int, mask: np.ndarray, label: str = "") -> MaskUpdate: ...

    def reset(self, object_id: int) -> MaskUpdate: ...

    def undo(self, object_id: int) -> MaskUpdate: ...

    def redo(self, object_id: int) -> MaskUpdate: ...

    def new_object_id(self) -> int: ...

    def close(self) -> None: ...


class SegmentationBackend(Protocol):
    def info(self) -> BackendInfo: ...

    def open_session(self, volume: Volume, preprocessing: Preprocessing | None = None) -> Session: ...


class LocalSession(SegmentationSession):
    def close(self) -> None:
        """Nothing to release in-process (the encodings stay in the shared cache for a re-opened volume)."""


class LocalBackend:
    """The engine in this process (GPU when present, CPU otherwise)."""

    def __init__(self, engine: SegmentationEngine, info: BackendInfo):
        self.engine = engine
        self._info = info

    def info(self) -> BackendInfo:
        return self._info

    def open_session(self, volume: Volume, preprocessing: Preprocessing | None = None) -> LocalSession:
        return LocalSession(self.engine, volume, preprocessing)
