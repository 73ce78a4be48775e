"""The three ways ``medsam3 evaluate`` prompts a session for one structure, each step giving a predicted mask.

- **text**: the label's name (``text_for_structure``), typed, through the whole volume with the model's default
  text protocol; the phrase and note the session reports are kept;
- **clicks**: the simulated user's first click, then one correction at a time, the object re-propagated through
  the volume after every click, as the module does with *Whole volume*;
- **box**: the ground truth's box on its largest slice, then propagation.
They use only the session interface, so they run the same in-process and against a ``medsam3 serve`` server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ...transports.backend import SegmentationBackend, Session
from ...geometry.slicing import SliceAxis
from .click_simulator import ClickSimulator

PROTOCOLS = ("text", "clicks", "box")


@dataclass
class Step:
    """One interaction and the object's mask after it."""

    protocol: str
    step: int  # 1-based: the click number for clicks, 1 for text and box
    prompt: str
    prediction: np.ndarray
    seconds: float
    encode_seconds: float | None  # None when the backend cannot tell (remote)
    phrase: str = ""
    note: str = ""

    @property
    def decode_seconds(self) -> float | None:
        return None if self.encode_seconds is None else max(0.0, self.seconds - self.encode_seconds)


class EncodingClock:
    """Seconds an in-process backend spends encoding slices (the embedding cache's misses); the rest of an
    interaction is decoding and propagation. A remote backend does not say, so its split stays unknown."""

    def __init__(self, backend: SegmentationBackend):
        self.seconds = 0.0
        self._cache = getattr(getattr(backend, "engine", None), "cache", None)
        if self._cache is not None:
            original = self._cache.get_or_compute

            def timed(key, compute):
                def encode():
                    start = time.perf_counter()
                    try:
                        return compute()
                    finally:
                        self.seconds += time.perf_counter() - start
                return original(key, encode)

            self._cache.get_or_compute = timed

    @property
    def available(self) -> bool:
        return self._cache is not None

    def close(self) -> None:
        if self._cache is not None and "get_or_compute" in vars(self._cache):
            del self._cache.get_or_compute


class _Timed:
    def __init__(self, clock: EncodingClock):
        self.clock = clock

    def __enter__(self) -> "_Timed":
        self._encoded, self._start = self.clock.seconds, time.perf_counter()
        return self

    def __exit__(self, *_) -> None:
        self.seconds = time.perf_counter() - self._start
        self.encode_seconds = self.clock.seconds - self._encoded if self.clock.available else None


def text_for_structure(name: str) -> str:
    """What the text protocol types for a structure: its label name, as the label file gives it, as a user would
    type it. The engine maps typed names onto the class names the model was trained on (``medsam3.model.vocabulary``,
    applied in ``SegmentationEngine``), so the evaluation measures exactly what a user typing that name gets; a
    name outside that vocabulary is sent as typed and its note is kept in the CSV's note column."""
    return name


def run_text(session: Session, name: str, clock: EncodingClock, axis: SliceAxis = SliceAxis.AXIAL) -> Iterator[Step]:
    typed = text_for_structure(name)
    with _Timed(clock) as timed:
        updates = session.segment_text(typed, axis, None)
    prediction = None
    for update in updates:
        mask = session.mask(update.object_id)
        prediction = mask if prediction is None else prediction | mask
    if prediction is None:
        raise RuntimeError("the session answered a typed name with no object")
    phrase = "; ".join(sorted({u.label for u in updates if u.label}))
    note = "; ".join(sorted({str(getattr(u, "note", "")) for u in updates if getattr(u, "note", "")}))
    yield Step("text", 1, f"text '{typed}'", prediction, timed.seconds, timed.encode_seconds, phrase, note)


def run_clicks(session: Session, simulator: ClickSimulator, ground_truth: np.ndarray, name: str, max_clicks: int,
               clock: EncodingClock) -> Iterator[Step]:
    """Up to ``max_clicks`` clicks; once nothing is left to correct, the remaining clicks keep the last mask."""
    object_id = session.new_object_id()
    click = simulator.first_click(ground_truth)
    prediction = np.zeros(ground_truth.shape, dtype=bool)
    for number in range(1, max_clicks + 1):
        if click is None:
            yield Step("clicks", number, "none (no error left)", prediction, 0.0, 0.0 if clock.available else None)
            continue
        with _Timed(clock) as timed:
            session.add_prompt(object_id, click.prompt(simulator.axis), whole_volume=True, target_text=name)
        prediction = session.mask(object_id)
        yield Step("clicks", number, click.describe(), prediction, timed.seconds, timed.encode_seconds)
        if number < max_clicks:
            click = simulator.next_click(ground_truth, prediction)


def run_box(session: Session, simulator: ClickSimulator, ground_truth: np.ndarray, name: str,
            clock: EncodingClock) -> Iterator[Step]:
    object_id = session.new_object_id()
    box = simulator.box(ground_truth)
    with _Timed(clock) as timed:
        session.add_prompt(object_id, box.prompt(simulator.axis), whole_volume=True, target_text=name)
    yield Step("box", 1, box.describe(), session.mask(object_id), timed.seconds, timed.encode_seconds)
