"""How a text prompt runs through a volume: the protocol's parameters in one place, and per-voxel label fusion.

Medical SAM3's 3D checkpoint was trained on 8-slice windows and is run by its authors like this
(AIM-Research-Lab/Medical-SAM3 ``medical/inference_3d.py`` and ``medical/INFERENCE_3D.md``):

- the slices are the frames of a video, at 504 px (the catalogue's input size for ``medical-sam3-3d``);
- the depth is cut into independent clips of 4 slices; for each clip and each label the tracking state starts
  empty, the text is given on the clip's first slice and propagation runs forward to the clip's last slice;
- ``hotstart_delay``, ``hotstart_unmatch_thresh`` and ``hotstart_dup_thresh`` are 0 (no output is held back and
  no track is removed by the hot-start heuristics), with temporal disambiguation on (the model built with
  ``apply_temporal_disambiguation=True``, which in the authors' ``sam3/model_builder.py`` also reconditions tracks
  on the detector every 16 frames and turns on the tracker's memory selection; transformers' tracker has no
  memory selection, see docs/conversion.md, "Differences that remain");
- several labels are fused per voxel: a voxel takes the label whose mask holds it with the highest sigmoid
  score, and only above a background floor of 0.5 ("pixel_score" fusion).

``LONG_TRACK`` is transformers' ``Sam3VideoModel`` as configured by Meta for natural video (one track through the
whole volume, hot start 15 / 8 / 8); it stays selectable for vanilla SAM 3, which was built for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VolumeTextProtocol:
    """Parameters of text through the volume (see the module docstring for where each comes from)."""

    name: str
    clip_length: int | None = 4  # slices per independent clip; None: one track through the whole volume
    hotstart_delay: int = 0
    hotstart_unmatch_thresh: int = 0
    hotstart_dup_thresh: int = 0
    temporal_disambiguation: bool = True  # reconditioning of tracks on detections every 16 frames
    background_floor: float = 0.5  # a voxel is labelled only when its best sigmoid score exceeds this
    detection_threshold: float | None = None  # None: the checkpoint's own (0.5 detect, 0.7 new track)

    def __post_init__(self) -> None:
        if self.clip_length is not None and self.clip_length < 1:
            raise ValueError("clip_length must be at least 1 (or None for one long track)")

    def clips(self, slice_count: int) -> list[tuple[int, int]]:
        """Half-open ``(first, end)`` slice ranges of the independent clips, in order."""
        if self.clip_length is None:
            return [(0, slice_count)]
        return [(start, min(slice_count, start + self.clip_length)) for start in range(0, slice_count,
                                                                                     self.clip_length)]

    def video_model_settings(self) -> dict[str, float | int]:
        """The attributes of transformers' ``Sam3VideoModel`` this protocol sets while it runs."""
        settings: dict[str, float | int] = {
            "hotstart_delay": self.hotstart_delay,
            "hotstart_unmatch_thresh": self.hotstart_unmatch_thresh,
            "hotstart_dup_thresh": self.hotstart_dup_thresh,
            "recondition_every_nth_frame": 16 if self.temporal_disambiguation else 0,
        }
        if self.detection_threshold is not None:
            settings["score_threshold_detection"] = self.detection_threshold
            settings["new_det_thresh"] = self.detection_threshold
        return settings


MEDICAL_SAM3_CLIPS = VolumeTextProtocol("medical-sam3-clips")
LONG_TRACK = VolumeTextProtocol("long-track", clip_length=None, hotstart_delay=15, hotstart_unmatch_thresh=8,
                                hotstart_dup_thresh=8)
PROTOCOLS: dict[str, VolumeTextProtocol] = {p.name: p for p in (MEDICAL_SAM3_CLIPS, LONG_TRACK)}
DEFAULT_PROTOCOL = MEDICAL_SAM3_CLIPS


def protocol_named(name: str | None) -> VolumeTextProtocol:
    if not name:
        return DEFAULT_PROTOCOL
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown text protocol {name!r}; use one of {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).astype(np.float32)


class LabelFusion:
    """Per-voxel fusion of several labels by score: label ``n`` claims the voxels of its mask whose score beats
    both the floor and every earlier label's score there (a later label needs a strictly higher score)."""

    def __init__(self, shape: tuple[int, ...], floor: float = 0.5):
        self.best = np.full(shape, floor, dtype=np.float32)
        self.owner = np.zeros(shape, dtype=np.uint16)  # 0: background; n: the n-th label (1-based)

    def offer(self, label: int, slice_index: int, mask: np.ndarray, scores: np.ndarray,
              as_slice_stack=lambda array: array) -> None:
        """Label ``label`` (1-based) proposes ``mask`` with per-voxel ``scores`` on one slice; ``as_slice_stack``
        gives the view of a volume array as slices of the view used (``SliceGeometry.as_slice_stack``)."""
        best, owner = as_slice_stack(self.best)[slice_index], as_slice_stack(self.owner)[slice_index]
        wins = mask & (scores > best)
        best[wins] = scores[wins]
        owner[wins] = label

    def mask_of(self, label: int) -> np.ndarray:
        return self.owner == label
