"""What the logic passes between its three steps: a :class:`Request` (made by ``prepare`` on the main thread,
read by ``predict`` and ``apply``), its :class:`RequestKind`, the per-volume state it refers to, and the
:class:`SegmentationResult` a call returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from medsam3.interaction.prompts import SlicePrompt
from medsam3.geometry.slicing import SliceAxis
from medsam3.geometry.volume import Volume
from medsam3.transports.backend import Session

from .terminology import Terminology
from .written_mask import WrittenMask


@dataclass
class SegmentationResult:
    """What a call changed: the segments written, and notes to show the user (e.g. an unknown term)."""

    segment_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    changed: bool = False
    dropped: bool = False  # a stale result (its scene, volume or segmentation is gone or changed): nothing written


@dataclass
class _VolumeState:
    key: tuple
    volume: Volume
    session: Session | None = None
    node: object = None  # the volume node itself: after a scene is cleared another node can carry the same ID
    objects: dict[tuple[str, str], int] = field(default_factory=dict)  # (segmentation ID, segment ID) -> object
    written: dict[int, WrittenMask] = field(default_factory=dict)  # object -> its voxels as last written by us
    written_time: dict[tuple[str, str], int] = field(default_factory=dict)  # segment -> labelmap time after that


def _kind(action: "RequestKind | str") -> "RequestKind":
    try:
        return RequestKind(action)
    except ValueError:
        raise ValueError(f"Unknown action {action!r}: use one of {', '.join(k.value for k in RequestKind)}.") from None


class RequestKind(str, Enum):
    """What a :class:`Request` asks for (a str enum: it compares equal to its value, e.g. ``"prompt"``)."""

    PROMPT = "prompt"  # clicks, a box, a scribble or a lasso refine one object (interaction.prompts.refined_target)
    TEXT = "text"  # typed names, one segment each
    SEED = "seed"  # start from what a segment holds now
    RESET = "reset"
    UNDO = "undo"
    REDO = "redo"


SEGMENT_ACTIONS = (RequestKind.UNDO, RequestKind.REDO, RequestKind.RESET, RequestKind.SEED)


@dataclass
class Request:
    """One user action, with everything read from MRML, ready for the model (see :meth:`predict`)."""

    action: RequestKind
    state: _VolumeState
    volume_node_id: str
    segmentation_node_id: str
    segment_id: str | None = None
    prompt: SlicePrompt | None = None
    whole_volume: bool = True
    terminologies: list[Terminology] = field(default_factory=list)
    axis: SliceAxis = SliceAxis.AXIAL
    slice_index: int | None = None
    seed_mask: np.ndarray | None = None
    object_id: int | None = None
    # what the result belongs to, checked by object and not by ID (IDs restart when a scene is cleared)
    volume_node: object = None
    segmentation_node: object = None
    image: object = None  # the volume's vtkImageData when the request was made
    generation: int = 0  # the logic's scene generation (close() starts a new one)

    def __post_init__(self) -> None:
        self.action = _kind(self.action)
