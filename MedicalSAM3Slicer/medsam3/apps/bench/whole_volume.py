"""Whole-volume time: text through a 100-slice CT at 504 px with the authors' protocol (every slice encoded once).

Estimated from per-slice figures measured through the engine on the one-folder model (see
:mod:`medsam3.apps.bench.full_size`), times 100, and labelled as an estimate: running 100 full-size slices would
take the bench tens of minutes, and with random weights the detector finds no object, so the tracker would never
run. Per slice, the protocol's work is:

- vision encoding: the ViT pass and the detector's neck (one backbone pass serves text, clicks and propagation),
  plus the tracker's own neck on that pass;
- detector: the text-conditioned DETR encoder, decoder and mask head on the cached encoding (the phrase's text
  encoding is computed once per volume, counted once);
- tracker: one propagation step from cached encodings (memory attention, mask decoder, memory encoder), per
  object followed (one object counted: the bench's propagation figure at the same size and path, a slice tracked
  with the memory full, as nearly every slice of a 100-slice volume is);
- fusion: the per-voxel label fusion of a 512 x 512 slice's mask scores (one label).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from ...geometry.volume import Volume
from ...interaction.engine import SegmentationEngine
from ...model.text_protocol import LabelFusion, sigmoid
from ...model.sam3.transformers_model import TransformersSegmentationModel

SLICES = 100
PHRASE = "spleen"


def _seconds(work, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_whole_volume(folder: Path, precision: str, image_size: int, volume: Volume,
                         tracker_seconds_per_slice: float) -> dict:
    """Per-slice figures of the text protocol through the engine, and their sum times ``SLICES``."""
    model = TransformersSegmentationModel(folder, "bench", image_size=image_size, precision=precision)
    for role in ("sam3", "sam3_tracker_video"):
        model.component(role)  # loading is not part of a slice's time
    engine = SegmentationEngine(model)
    frames = engine.frames(volume, "axial")
    depth = volume.shape_ijk[2]
    first, second = depth // 2, min(depth - 1, depth // 2 + 1)
    print(f"whole-volume figures at {image_size} px on the {model.precision_plan.name} path ...", flush=True)
    model.encoding(frames, second, "text")  # a warm-up pass (first-call allocations)
    encode = _seconds(lambda: model.encoding(frames, first, "text"))
    tracking_neck = _seconds(lambda: model.encoding(frames, first, "tracking"))
    text_once = _seconds(lambda: model._text_embeddings(PHRASE))
    embedding = model.encoding(frames, first, "text")
    detector = _seconds(lambda: model.segment_with_text(embedding, PHRASE), repeats=3)

    rows = columns = 512  # a typical CT slice (the benchmark's crop is smaller)
    fusion = LabelFusion((SLICES, rows, columns))
    logits = np.random.default_rng(0).normal(0, 5, (rows, columns)).astype(np.float32)

    def fuse_one_slice():
        scores = sigmoid(logits)
        fusion.offer(1, SLICES // 2, scores > 0.5, scores)

    fuse = _seconds(fuse_one_slice, repeats=5)
    per_slice = {"vision_encoding": encode + tracking_neck, "detector": detector,
                 "tracker_propagation": tracker_seconds_per_slice, "fusion": fuse}
    total = SLICES * sum(per_slice.values()) + text_once
    path = model.precision_plan.name
    del model, engine
    return {"path": path, "image_size": image_size,
            "slices": SLICES, "estimate": True,
            "seconds_per_slice": {key: round(value, 6) for key, value in per_slice.items()},
            "text_encoding_once_seconds": round(text_once, 3),
            "whole_volume_seconds": round(total, 1),
            "share": {key: round(SLICES * value / total, 3) for key, value in per_slice.items()}}


def _seconds_text(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds >= 1 else f"{1000 * seconds:.3g} ms"


def format_whole_volume(figures: list[dict]) -> list[str]:
    if not figures:
        return []
    lines = ["", f"whole volume, text through {figures[0]['slices']} slices at {figures[0]['image_size']} px "
                 "(ESTIMATE: per-slice figures x slices, one object followed)"]
    for entry in figures:
        if "error" in entry:
            lines.append(f"  {entry['path']:<10} not measured: {entry['error']}")
            continue
        parts = ", ".join(f"{key.replace('_', ' ')} {_seconds_text(value)} ({100 * entry['share'][key]:.0f} %)"
                          for key, value in entry["seconds_per_slice"].items())
        lines.append(f"  {entry['path']:<10} {entry['whole_volume_seconds']:>8} s   per slice: {parts}; "
                     f"text encoded once {entry['text_encoding_once_seconds']} s")
    return lines
