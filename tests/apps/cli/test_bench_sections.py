"""`medsam3 bench` runs end to end and prints every section of its table, with figures a reader can use.

The full-size random-weight architecture would take minutes per slice here, so the benchmark's one model
builder is pointed at the tiny random-weight models and its matrix-product probes at small shapes: everything
else -- the command line, the engine's click and propagation paths, the FLOP counting, the table, the JSON --
is the benchmark's own. Its figures' ranges (every fraction of a peak at most 1, ...) are issue 22's."""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch

from medsam3.apps.bench import benchmark
from medsam3.apps.cli import main
from medsam3.model.model_classes import MODEL_CLASSES
from medsam3.model.processors import build_processor
from medsam3.model.tiny_models import TINY_IMAGE_SIZE, build_tiny_configs


def tiny_model(role: str, image_size: int):
    assert image_size == TINY_IMAGE_SIZE
    torch.manual_seed(0)
    model = MODEL_CLASSES[role](build_tiny_configs()[role]).eval()
    return model, build_processor(role, image_size)


SECTIONS = ["matmul GFLOP/s", "encoder shapes (time-weighted)", "2048^2", "input size (px)",
            "vision encoding per slice", "encoder work", "encoder speed", "fraction of matmul, this path",
            "click to mask, cached (median)", "click to mask, cached (p90)", "propagation per slice, encoding",
            "propagation per slice, cached", "loaded tracker resident", "peak resident memory (process)"]


def test_bench_on_the_tiny_model_prints_each_section_and_writes_its_figures(monkeypatch, tmp_path, capsys,
                                                                             one_torch_thread):
    monkeypatch.setattr(benchmark, "_full_size", tiny_model)
    monkeypatch.setattr(benchmark, "ENCODER_SHAPES", ((64, 32, 48), (32, 32, 32), (16, 32, 16)))
    monkeypatch.setattr(benchmark, "SQUARE_SHAPE", (64, 64, 64))
    monkeypatch.setattr(benchmark, "matmul_table", functools.partial(benchmark.matmul_table, seconds=0.01))
    figures = tmp_path / "bench.json"

    status = main(["bench", "--sizes", str(TINY_IMAGE_SIZE), "--clicks", "3", "--propagation-slices", "2",
                   "--precision", "float32", "--agreement", "none", "--json", str(figures)])

    printed = capsys.readouterr().out
    assert status == 0
    for section in SECTIONS:
        assert section in printed, f"the table lacks '{section}'"
    report = json.loads(figures.read_text())
    assert f"written: {figures}" in printed
    (size,) = report["sizes"]
    assert size["image_size"] == TINY_IMAGE_SIZE and size["path"] == "float32"
    assert size["clicks_measured"] == 3 and size["propagation_slices"] == 2
    positive = ["vision_encoding_seconds", "click_latency_median_seconds", "click_latency_p90_seconds",
                "propagation_seconds_per_slice_with_encoding", "vision_encoder_gflops_per_second"]
    for name in positive:
        assert math.isfinite(size[name]) and size[name] >= 0, name
    assert size["click_latency_p90_seconds"] >= size["click_latency_median_seconds"]
    assert report["peak_resident_mib"] > 0
    for precision in ("float32", "bfloat16"):
        assert report["matmul"][precision]["encoder_shapes_gflops"] > 0
    # each figure printed in the table is the one written to the JSON
    assert f"{size['click_latency_median_seconds']!s:>10}" in printed
