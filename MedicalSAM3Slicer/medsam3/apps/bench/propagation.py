"""Propagation per slice, as a user propagating through an organ feels it: with encoding, from cached encodings, and
from cached encodings once the tracker's memory is full.

The tracker remembers the prompted slice and the last ``num_maskmem - 1`` tracked ones (7 frames in all for SAM 3),
and every tracked slice cross-attends to all of them. Its work per slice therefore grows over the first slices and
then stays: a two-slice figure (the prompted slice and one more, with one remembered frame) understates a
100-slice propagation several times. So the click is placed on the first slice of the clip, the clip runs forward,
and each slice is timed on its own (the engine's ``on_slice``); the slices tracked with a full memory are the
figure that stands for a long propagation. Their work is counted too (torch's FLOP counter, in a separate pass),
attention included (:mod:`medsam3.apps.bench.flops`), so the bench can say how long that work would take at the
machine's own matmul ceiling: a floor no kernel beats. (Object pointers, four tokens per tracked slice up to 16
slices, still add a little work after the memory is full: under 1 % of a slice's attention at 504 px.)
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ...geometry.volume import Volume
from ...interaction.engine import SegmentationEngine
from ...interaction.prompts import PointPrompt, SlicePrompt
from ...model.sam3.transformers_model import TransformersSegmentationModel


def clip_from(volume: Volume, k: int, slices: int) -> tuple[Volume, int]:
    """``slices`` axial slices from slice ``k`` (from earlier where the volume would end first), placed where they
    lie in the volume; and the index of the clip's first slice in the volume."""
    first = max(0, min(k, volume.shape_ijk[2] - slices))
    shift = np.eye(4)
    shift[2, 3] = first
    return Volume(volume.array[first:first + slices], volume.ijk_to_ras @ shift, volume.modality), first


def forward_slice_marks(engine: SegmentationEngine, clip: Volume, prompt: list[SlicePrompt], mark) -> list:
    """Propagate forward from the clip's first slice; ``mark()`` is read once before and once after each slice
    the forward pass tracks (the backward pass, one slice back onto the prompted slice, is not marked)."""
    marks = [mark()]
    seen = [0]

    def on_slice(done, _total):
        if done > seen[0]:
            seen[0] = done
            marks.append(mark())

    engine.propagate(clip, prompt, stop_after_empty=0, on_slice=on_slice)
    return marks


def steps(marks: list) -> list:
    return [after - before for before, after in zip(marks, marks[1:])]


def measure_propagation(video, image_size: int, volume: Volume, slices: int, precision: str) -> dict:
    """``video``: a (model, processor) pair of ``Sam3TrackerVideoModel``. Three passes over the same clip of
    ``slices`` slices: with encoding (timed as a whole), from cached encodings (each slice timed), and once more
    under the FLOP counter (each slice's work)."""
    from .flops import flop_counter

    memory_frames = int(video[0].config.num_maskmem)
    model = TransformersSegmentationModel.from_components({"sam3_tracker_video": video}, "full-size-random",
                                                          image_size=image_size, precision=precision)
    engine = SegmentationEngine(model)
    i, j, k = (n // 2 for n in volume.shape_ijk)
    clip, first = clip_from(volume, k, slices)
    prompt = [SlicePrompt("axial", points=(PointPrompt((i, j, k - first)),))]
    count = clip.shape_ijk[2]
    start = time.perf_counter()
    engine.propagate(clip, prompt, stop_after_empty=0)
    with_encoding = (time.perf_counter() - start) / count
    seconds = steps(forward_slice_marks(engine, clip, prompt, time.perf_counter))
    with flop_counter() as counter:
        flops = steps(forward_slice_marks(engine, clip, prompt, counter.get_total_flops))
    # slice 0 is the prompted one (no memory); slice n (n >= 1) attends to min(n, memory_frames) remembered frames
    full = [n for n in range(1, count) if n >= memory_frames]
    figures = {"propagation_slices": count, "memory_frames": memory_frames,
               "propagation_seconds_per_slice_with_encoding": round(with_encoding, 2),
               "propagation_seconds_per_slice_cached_encodings": round(sum(seconds) / count, 3),
               "propagation_seconds_each_slice_cached": [round(s, 3) for s in seconds],
               "propagation_gflop_each_slice": [round(f / 1e9, 2) for f in flops]}
    if full:
        figures["propagation_seconds_per_slice_full_memory"] = round(statistics.median(seconds[n] for n in full), 3)
        figures["propagation_gflop_per_slice_full_memory"] = round(statistics.median(flops[n] for n in full) / 1e9, 2)
    else:
        figures["propagation_seconds_per_slice_full_memory"] = (
            f"n/a: needs more than {memory_frames} slices (--propagation-slices)")
    return figures


def tracker_seconds(figures: dict) -> float:
    """A tracked slice's time in a long propagation: the full-memory figure where the clip reached it."""
    full = figures.get("propagation_seconds_per_slice_full_memory")
    return full if isinstance(full, (int, float)) else figures["propagation_seconds_per_slice_cached_encodings"]
