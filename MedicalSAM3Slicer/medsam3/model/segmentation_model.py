"""The interface between the engine and a segmentation network, in the network's own image space.

Everything crossing this interface is already in model space: square S x S grey images scaled 0..1, points and
boxes in model pixel coordinates (integer = pixel centre), masks as logits on a G x G grid covering the model
square. The engine owns every geometric step on either side (volume -> slice -> model square and back), so the
transformers-backed model and the ground-truth oracle used in tests see exactly the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class ModelPrompt:
    """One object's prompt on one frame, in model coordinates."""

    points_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (N, 2)
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))  # 1 / 0
    box_xyxy: np.ndarray | None = None  # (4,)
    mask: np.ndarray | None = None  # (G, G) foreground fraction 0..1 on the model's mask-input grid

    def is_empty(self) -> bool:
        return len(self.points_xy) == 0 and self.box_xyxy is None and self.mask is None


@dataclass(frozen=True)
class MaskLogits:
    """A predicted mask: logits on a square grid over the model image, and the model's confidence 0..1."""

    logits: np.ndarray  # (G, G) float32; > 0 is foreground
    score: float


@dataclass(frozen=True)
class FrameMasks:
    """Tracking output for one frame: object id -> mask (objects absent on the frame are left out)."""

    frame_index: int
    masks: Mapping[int, MaskLogits]


class FrameSource(Protocol):
    """The model images of a volume's slices along one view, made on demand."""

    def __len__(self) -> int: ...

    def image(self, index: int) -> np.ndarray:
        """The S x S float32 model image of frame ``index``."""

    def embedding(self, index: int, compute: Callable[[np.ndarray], object], role: str = "") -> object:
        """The cached encoding of frame ``index`` for a use (``role``), computed with ``compute(image)``
        when missing."""


class SegmentationModel(Protocol):
    """What the engine needs from a network. Implemented by :class:`medsam3.model.sam3.transformers_model.
    TransformersSegmentationModel` and by the ground-truth oracle of the tests."""

    name: str
    image_size: int  # S
    mask_input_size: int  # G of ModelPrompt.mask

    def encoding(self, frames: FrameSource, index: int, use: str) -> object:
        """The encoding of frame ``index`` for a use ("prompts" or "text"), through ``frames.embedding`` so that
        it is cached; how encodings are shared between uses is the model's choice. Opaque to the engine."""

    def segment_with_prompt(self, embedding: object, prompt: ModelPrompt) -> MaskLogits:
        """The best mask for points / box / mask on an encoded image."""

    def segment_with_text(self, embedding: object, text: str) -> list[MaskLogits]:
        """Every instance of a text concept on an encoded image, with its score."""

    def track(self, frames: FrameSource, prompts: Mapping[int, ModelPrompt], start_index: int,
              reverse: bool) -> Iterator[FrameMasks]:
        """Propagate one object (id 1) prompted on some frames through the frames, from ``start_index`` forward
        (or backward with ``reverse``). Yields one FrameMasks per frame visited, the start frame first."""

    def track_text(self, frames: FrameSource, text: str, start_index: int, reverse: bool) -> Iterator[FrameMasks]:
        """Detect and follow every instance of a text concept through the frames."""


def frames_in_order(count: int, start_index: int, reverse: bool) -> Sequence[int]:
    return range(start_index, -1, -1) if reverse else range(start_index, count)
