"""Benchmark of the full-size architecture on this machine (random weights: speed does not depend on them).

Prints, and writes as JSON: the machine's own matrix-multiply throughput; vision encoding per slice at each
input size with its FLOP count, so encoder speed reads as a fraction of what the machine can do; click-to-mask
latency from a cached encoding (median of many clicks through the engine, on a real CT slice when the shared
data is present); propagation time per slice with and without encoding; and peak resident memory.

Run: ``medsam3 bench`` or ``python -m medsam3.benchmark --json bench.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .engine import SegmentationEngine
from .prompts import PointPrompt, SlicePrompt
from .transformers_model import TransformersSegmentationModel
from .volume import Volume

SPLEEN_CT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct" / "spleen_msd_crop" / "image.nii.gz"


def matmul_gflops(dtype: torch.dtype, size: int = 2048, seconds: float = 2.0) -> float:
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - start) / 1e9


def peak_resident_mib() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 1024**2


def _full_size(role: str, image_size: int):
    """A full-size model of one class with random weights, and its processor, at an input size."""
    from transformers import Sam3TrackerConfig, Sam3TrackerModel, Sam3TrackerVideoConfig, Sam3TrackerVideoModel

    from .processors import build_processor
    from .transformers_model import resize_config

    config_class, model_class = {"sam3_tracker": (Sam3TrackerConfig, Sam3TrackerModel),
                                 "sam3_tracker_video": (Sam3TrackerVideoConfig, Sam3TrackerVideoModel)}[role]
    config = config_class.from_dict(resize_config(config_class(image_size=image_size).to_dict()
                                                  if role == "sam3_tracker_video" else config_class().to_dict(),
                                                  image_size))
    torch.manual_seed(0)
    model = model_class(config).eval()
    return model, build_processor(role, image_size)


def benchmark_volume() -> Volume:
    if SPLEEN_CT.exists():
        from .volume_io import read_volume

        return read_volume(SPLEEN_CT)
    rng = np.random.default_rng(0)
    return Volume(rng.normal(0, 200, (26, 166, 164)).astype(np.int16), np.diag([0.8, 0.8, 5.0, 1.0]))


def _count_flops(function) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        function()
    return int(counter.get_total_flops())


def measure_clicks(image_size: int, volume: Volume, clicks: int, bf16_autocast: bool) -> dict:
    """Encoding one slice, its FLOPs, and decoding clicks from the cached encoding, through the engine."""
    print(f"building the full-size tracker at {image_size} px (random weights) ...", flush=True)
    tracker = _full_size("sam3_tracker", image_size)
    parameters = sum(p.numel() for p in tracker[0].parameters())
    model = TransformersSegmentationModel.from_components({"sam3_tracker": tracker}, "full-size-random",
                                                          image_size=image_size, bf16_autocast=bf16_autocast)
    engine = SegmentationEngine(model)
    frames = engine.frames(volume, "axial")
    image = frames.image(volume.shape_ijk[2] // 2)

    start = time.perf_counter()
    model.encode_for_prompts(image)
    encode_seconds = time.perf_counter() - start
    encoder_flops = _count_flops(lambda: model.encode_for_prompts(image))

    i, j, k = (n // 2 for n in volume.shape_ijk)
    engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt((i, j, k)),)))  # encodes slice k
    rng = np.random.default_rng(0)
    latencies = []
    for _ in range(clicks):
        point = (float(rng.integers(i - 30, i + 30)), float(rng.integers(j - 30, j + 30)), float(k))
        start = time.perf_counter()
        engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt(point),)))
        latencies.append(time.perf_counter() - start)
    return {"image_size": image_size, "tracker_parameters_millions": round(parameters / 1e6, 1),
            "vision_encoding_seconds": round(encode_seconds, 2),
            "vision_encoder_gflop": round(encoder_flops / 1e9, 1),
            "vision_encoder_gflops_per_second": round(encoder_flops / 1e9 / encode_seconds, 1),
            "click_latency_median_seconds": round(statistics.median(latencies), 4),
            "click_latency_p90_seconds": round(float(np.percentile(latencies, 90)), 4),
            "clicks_measured": len(latencies)}


def measure_propagation(image_size: int, volume: Volume, propagation_slices: int, bf16_autocast: bool) -> dict:
    """Propagating one click through a few slices: first with encoding, then again from cached encodings (as a
    correction re-propagates)."""
    print(f"building the full-size tracker video model at {image_size} px ...", flush=True)
    video = _full_size("sam3_tracker_video", image_size)
    video_model = TransformersSegmentationModel.from_components({"sam3_tracker_video": video}, "full-size-random",
                                                                image_size=image_size, bf16_autocast=bf16_autocast)
    video_engine = SegmentationEngine(video_model)
    i, j, k = (n // 2 for n in volume.shape_ijk)
    first = max(0, k - propagation_slices // 2)
    clip = Volume(volume.array[first:first + propagation_slices], volume.ijk_to_ras, volume.modality)
    prompt = [SlicePrompt("axial", points=(PointPrompt((i, j, k - first)),))]
    start = time.perf_counter()
    video_engine.propagate(clip, prompt, stop_after_empty=0)
    with_encoding = (time.perf_counter() - start) / clip.shape_ijk[2]
    start = time.perf_counter()
    video_engine.propagate(clip, prompt, stop_after_empty=0)
    cached = (time.perf_counter() - start) / clip.shape_ijk[2]
    return {"propagation_slices": clip.shape_ijk[2],
            "propagation_seconds_per_slice_with_encoding": round(with_encoding, 2),
            "propagation_seconds_per_slice_cached_encodings": round(cached, 2)}


def run(sizes: list[int], clicks: int, propagation_slices: int, threads: int | None, precision: str) -> dict:
    from .transformers_model import cpu_has_fast_bfloat16

    if threads:
        torch.set_num_threads(threads)
    bf16_autocast = {"float32": False, "bfloat16": True, "auto": cpu_has_fast_bfloat16()}[precision]
    volume = benchmark_volume()
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "slice_source": str(SPLEEN_CT) if SPLEEN_CT.exists() else "synthetic",
                          "precision": "float32 weights" + (", bfloat16 autocast" if bf16_autocast else "")},
              "matmul_gflops_float32": round(matmul_gflops(torch.float32), 1),
              "matmul_gflops_bfloat16": round(matmul_gflops(torch.bfloat16), 1),
              "sizes": []}
    for size in sizes:
        result = (measure_clicks(size, volume, clicks, bf16_autocast)
                  | measure_propagation(size, volume, propagation_slices, bf16_autocast))
        matmul = report["matmul_gflops_bfloat16" if bf16_autocast else "matmul_gflops_float32"]
        result["encoder_fraction_of_matmul_at_this_precision"] = round(
            result["vision_encoder_gflops_per_second"] / matmul, 3)
        report["sizes"].append(result)
    report["peak_resident_mib"] = round(peak_resident_mib(), 0)
    return report


def format_table(report: dict) -> str:
    lines = [f"machine: {report['machine']['processor']}, {report['machine']['threads']} threads, "
             f"torch {report['machine']['torch']}, {report['machine']['precision']}",
             f"matmul 2048^2: {report['matmul_gflops_float32']} GFLOP/s float32, "
             f"{report['matmul_gflops_bfloat16']} GFLOP/s bfloat16", ""]
    rows = [("input size (px)", "image_size", ""), ("vision encoding per slice", "vision_encoding_seconds", "s"),
            ("encoder work", "vision_encoder_gflop", "GFLOP"),
            ("encoder speed", "vision_encoder_gflops_per_second", "GFLOP/s"),
            ("  as a fraction of matmul", "encoder_fraction_of_matmul_at_this_precision", ""),
            ("click to mask, cached (median)", "click_latency_median_seconds", "s"),
            ("click to mask, cached (p90)", "click_latency_p90_seconds", "s"),
            ("propagation per slice, encoding", "propagation_seconds_per_slice_with_encoding", "s"),
            ("propagation per slice, cached", "propagation_seconds_per_slice_cached_encodings", "s")]
    for label, key, unit in rows:
        values = "  ".join(f"{size[key]!s:>10}" for size in report["sizes"])
        lines.append(f"{label:<34}{values} {unit}")
    lines.append(f"{'peak resident memory':<34}{report['peak_resident_mib']:>10} MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medsam3 bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1008,504", help="input sizes in pixels, comma-separated")
    parser.add_argument("--clicks", type=int, default=20, help="clicks to time from a cached encoding (>= 20)")
    parser.add_argument("--propagation-slices", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: bfloat16 autocast where this CPU computes it natively, as the engine does")
    parser.add_argument("--json", type=Path, default=Path("benchmark.json"), help="where to write the figures")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    report = run(sizes, max(1, args.clicks), max(1, args.propagation_slices), args.threads, args.precision)
    args.json.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
