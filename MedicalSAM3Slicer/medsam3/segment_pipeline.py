"""Segmenting one image file from typed text, clicks and a box, and writing the results: the work behind
``medsam3 segment`` and the demo.

Clicks and the box form one prompt on one slice of one view. With typed text, every phrase becomes a segment;
clicks and a box then refine the single typed target. Masks are rebuilt from the :class:`MaskUpdate`s a session
returns, so the same code runs in-process and against a server.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .backend import SegmentationBackend
from .errors import PromptError
from .overlay import render_overlay
from .prompts import BoxPrompt, PointPrompt, SlicePrompt, parse_text_targets, resolve_slice_prompt
from .seg_nrrd import write_seg_nrrd
from .session import MaskUpdate
from .slicing import SliceAxis, SliceGeometry
from .volume import Volume
from .volume_io import write_labelmap

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class SegmentRequest:
    """What to segment. Points and box corners are RAS millimetres, or voxel (i, j, k) with ``coordinates_ijk``."""

    text: str = ""
    positive_points: tuple[Triple, ...] = ()
    negative_points: tuple[Triple, ...] = ()
    box: tuple[Triple, Triple] | None = None
    coordinates_ijk: bool = False
    view: str = "axial"
    whole_volume: bool = True
    segment_name: str = ""  # the name of a clicked / boxed object when no text is typed

    @property
    def has_spatial_prompt(self) -> bool:
        return bool(self.positive_points or self.negative_points or self.box)

    def check(self) -> None:
        """Reject requests that cannot be carried out, before any model is loaded."""
        if not self.text.strip() and not self.has_spatial_prompt:
            raise PromptError("Nothing to segment: give --text, --point or --box.")
        if self.negative_points and not (self.positive_points or self.box or self.text.strip()):
            raise PromptError("A negative point only removes from an object: add a --point, a --box or --text.")
        if self.text.strip() and self.has_spatial_prompt and len(parse_text_targets(self.text)) > 1:
            raise PromptError("Clicks and boxes refine one typed target; type a single phrase with them, or "
                              "segment the other phrases in a separate run.")
        SliceAxis.parse(self.view)


@dataclass
class SegmentOutcome:
    """A labelmap (label n = ``segment_names[n - 1]``), each segment's best model score, and step timings."""

    labels: np.ndarray
    segment_names: list[str]
    scores: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the user (e.g. a name the model was not trained on)

    def renamed(self, names: list[str]) -> "SegmentOutcome":
        """The same segments under new names (e.g. labelled as a plumbing check)."""
        scores = {new: self.scores[old] for old, new in zip(self.segment_names, names)}
        return SegmentOutcome(self.labels, list(names), scores, self.timings, self.notes)


class StepTimer:
    """Seconds spent in named steps, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def _to_ijk(volume: Volume, point: Triple, coordinates_ijk: bool) -> Triple:
    if coordinates_ijk:
        return tuple(float(v) for v in point)
    return tuple(float(v) for v in volume.ras_to_ijk_points([point])[0])


def build_slice_prompt(volume: Volume, request: SegmentRequest) -> SlicePrompt | None:
    """The request's clicks and box as one prompt on one slice (None without clicks or box)."""
    if not request.has_spatial_prompt:
        return None
    points = tuple(PointPrompt(_to_ijk(volume, p, request.coordinates_ijk), True) for p in request.positive_points)
    points += tuple(PointPrompt(_to_ijk(volume, p, request.coordinates_ijk), False)
                    for p in request.negative_points)
    box = None
    if request.box is not None:
        box = BoxPrompt(_to_ijk(volume, request.box[0], request.coordinates_ijk),
                        _to_ijk(volume, request.box[1], request.coordinates_ijk))
    prompt = SlicePrompt(SliceAxis.parse(request.view), points=points, box=box)
    resolve_slice_prompt(volume, prompt)  # a prompt off the volume fails here, with the engine's message
    return prompt


def _text_slice_index(volume: Volume, request: SegmentRequest, prompt: SlicePrompt | None) -> int | None:
    """The slice typed text is detected on: None (every slice) for whole-volume runs, else the clicked slice or
    the middle slice of the view."""
    if request.whole_volume:
        return None
    if prompt is not None:
        return resolve_slice_prompt(volume, prompt).slice_index
    return SliceGeometry.for_volume(volume, request.view).slice_count // 2


def segment_volume(backend: SegmentationBackend, volume: Volume, request: SegmentRequest,
                   timer: StepTimer | None = None) -> SegmentOutcome:
    """Run the request in one session of ``backend`` and return the labelmap of its segments."""
    request.check()
    timer = timer or StepTimer()
    prompt = build_slice_prompt(volume, request)
    masks: dict[int, np.ndarray] = {}
    names: dict[int, str] = {}
    scores: dict[int, float] = {}

    notes: list[str] = []

    def collect(update: MaskUpdate, name: str) -> None:
        if update.note and update.note not in notes:
            notes.append(update.note)
        mask = masks.setdefault(update.object_id, np.zeros(volume.array.shape, dtype=bool))
        update.apply_to(mask)
        names[update.object_id] = name
        if update.slice_scores:
            scores[update.object_id] = max(update.slice_scores.values())

    with timer.step("open_session"):  # for a server, this uploads the volume
        session = backend.open_session(volume)
    try:
        if request.text.strip():
            with timer.step("text"):
                for update in session.segment_text(request.text, request.view,
                                                   _text_slice_index(volume, request, prompt)):
                    collect(update, update.label)
        if prompt is not None:
            with timer.step("prompts"):
                object_id = next(iter(masks), None) or session.new_object_id()
                name = names.get(object_id) or request.segment_name or "Segment_1"
                collect(session.add_prompt(object_id, prompt, whole_volume=request.whole_volume,
                                           target_text=request.text.strip()), name)
    finally:
        session.close()
    outcome = _as_labelmap(volume.array.shape, masks, names, scores, timer)
    outcome.notes = notes
    return outcome


def _as_labelmap(shape: tuple[int, ...], masks: dict[int, np.ndarray], names: dict[int, str],
                 scores: dict[int, float], timer: StepTimer) -> SegmentOutcome:
    order = sorted(masks)
    labels = np.zeros(shape, dtype=np.uint8 if len(order) < 256 else np.uint16)
    for value, object_id in enumerate(order, start=1):
        labels[masks[object_id]] = value  # a later segment wins where two overlap
    segment_names = [names[o] for o in order]
    return SegmentOutcome(labels, segment_names, {names[o]: scores.get(o, 0.0) for o in order}, timer.seconds)


@dataclass(frozen=True)
class OutputPaths:
    """Where results go; None skips an output."""

    labelmap: Path
    seg_nrrd: Path | None = None
    overlay: Path | None = None

    @classmethod
    def in_folder(cls, folder: str | Path, seg_nrrd: bool = True, overlay: bool = True) -> "OutputPaths":
        folder = Path(folder)
        return cls(folder / "labelmap.nii.gz", folder / "segmentation.seg.nrrd" if seg_nrrd else None,
                   folder / "overlay.png" if overlay else None)


def write_outputs(outcome: SegmentOutcome, volume: Volume, paths: OutputPaths, overlay_title: str = "",
                  timer: StepTimer | None = None) -> list[Path]:
    """Write the labelmap (and optionally the .seg.nrrd and overlay); returns the files written."""
    timer = timer or StepTimer()
    written = []
    with timer.step("write"):
        for path in (paths.labelmap, paths.seg_nrrd, paths.overlay):
            if path is not None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_labelmap(paths.labelmap, outcome.labels, volume)
        written.append(Path(paths.labelmap))
        if paths.seg_nrrd is not None:
            written.append(write_seg_nrrd(paths.seg_nrrd, outcome.labels, outcome.segment_names, volume))
    if paths.overlay is not None:
        with timer.step("overlay"):
            written.append(render_overlay(volume, outcome.labels, paths.overlay, overlay_title))
    return written
