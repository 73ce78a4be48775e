"""Benchmark of the full-size architecture on this machine (random weights: speed does not depend on them).

Prints, and writes as JSON: the path the engine runs (the device line); the machine's own matrix-multiply
throughput in float32 and bfloat16, on the ViT's own matrix shapes and on 2048^2; vision encoding per slice at
each input size with its FLOP count, so encoder speed reads as a fraction of what the machine can do at the
precision in use; click-to-mask latency from a cached encoding (median of many clicks through the engine, on a
real CT slice when the shared data is present); propagation time per slice with and without encoding; the
memory the loaded model holds and the process's peak; and how far the bfloat16 path's masks are from float32
ones on real CT and MRI slices with fixed prompts (random weights: numerical drift, not quality).

Run: ``medsam3 bench`` or ``python -m medsam3.apps.bench.benchmark --json bench.json``.
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

from ...interaction.engine import SegmentationEngine
from ...interaction.prompts import PointPrompt, SlicePrompt
from ...model.transformers_model import TransformersSegmentationModel
from ...geometry.volume import Volume

SPLEEN_CT = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "ct" / "spleen_msd_crop" / "image.nii.gz"


# (rows, inner, columns) of the ViT's largest products: the MLP of a 1008-px global layer (72 x 72 tokens), the
# fused-width projections of a 504-px global layer (36 x 36 tokens), a 24 x 24 window's projection; and 2048^2
ENCODER_SHAPES = ((5184, 1024, 4736), (1296, 1024, 3072), (576, 1024, 1024))
SQUARE_SHAPE = (2048, 2048, 2048)


def matmul_gflops(dtype: torch.dtype, shape: tuple[int, int, int] = SQUARE_SHAPE, seconds: float = 1.0) -> dict:
    """Throughput of (rows x inner) @ (inner x columns) in ``dtype``. Where one product would take more than
    ``seconds`` (emulated bfloat16 runs at a few GFLOP/s) it is timed on fewer rows: throughput hardly depends on
    the row count once there are a few hundred, and the figure says how many rows were used."""
    rows, inner, columns = shape
    b = torch.randn(inner, columns, dtype=dtype)
    probe_rows = min(rows, 64)
    probe = torch.randn(probe_rows, inner, dtype=dtype)
    torch.matmul(probe, b)  # warm-up
    start = time.perf_counter()
    torch.matmul(probe, b)
    per_row = (time.perf_counter() - start) / probe_rows
    used_rows = int(min(rows, max(probe_rows, seconds / 3 / max(per_row, 1e-9))))
    a = torch.randn(used_rows, inner, dtype=dtype)
    torch.matmul(a, b)
    runs, start = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        runs += 1
    gflops = 2 * used_rows * inner * columns * runs / (time.perf_counter() - start) / 1e9
    return {"shape": "x".join(map(str, shape)), "gflops": float(f"{gflops:.3g}"), "rows_timed": used_rows}


def matmul_table(seconds: float = 1.0) -> dict:
    """Both precisions on the encoder's shapes and on 2048^2; ``encoder_shapes_gflops`` is their time-weighted
    mean (the same FLOPs done on each shape), the figure the encoder is compared with."""
    table = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        shapes = [matmul_gflops(dtype, shape, seconds) for shape in ENCODER_SHAPES]
        table[name] = {"encoder_shapes": shapes, "square_2048": matmul_gflops(dtype, SQUARE_SHAPE, seconds),
                       "encoder_shapes_gflops": float(f"{len(shapes) / sum(1 / s['gflops'] for s in shapes):.3g}")}
    return table


def peak_resident_mib() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 1024**2


def resident_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1024**2


def _full_size(role: str, image_size: int):
    """A full-size model of one class with random weights, and its processor, at an input size."""
    from transformers import Sam3TrackerConfig, Sam3TrackerModel, Sam3TrackerVideoConfig, Sam3TrackerVideoModel

    from ...model.processors import build_processor
    from ...model.transformers_model import resize_config

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
        from ...files.volume_io import read_volume

        return read_volume(SPLEEN_CT)
    rng = np.random.default_rng(0)
    return Volume(rng.normal(0, 200, (26, 166, 164)).astype(np.int16), np.diag([0.8, 0.8, 5.0, 1.0]))


def measure_clicks(image_size: int, volume: Volume, clicks: int, precision: str) -> dict:
    """Encoding one slice (timed once, its FLOPs counted in that same pass), the memory the loaded tracker holds,
    and decoding clicks from the cached encoding, through the engine."""
    import gc

    gc.collect()
    before = resident_mib()
    print(f"building the full-size tracker at {image_size} px (random weights) ...", flush=True)
    tracker = _full_size("sam3_tracker", image_size)
    parameters = sum(p.numel() for p in tracker[0].parameters())
    model = TransformersSegmentationModel.from_components({"sam3_tracker": tracker}, "full-size-random",
                                                          image_size=image_size, precision=precision)
    gc.collect()
    model_mib = resident_mib() - before
    engine = SegmentationEngine(model)
    frames = engine.frames(volume, "axial")
    i, j, k = (n // 2 for n in volume.shape_ijk)

    from torch.utils.flop_counter import FlopCounterMode

    print(f"encoding one slice at {image_size} px ...", flush=True)
    int8_flops = [0]  # the FLOP counter does not see int8 products: counted from the layers' shapes

    def count_int8(layer, inputs, output):
        int8_flops[0] += 2 * inputs[0].numel() * layer.out_features

    hooks = [layer.register_forward_hook(count_int8) for layer in tracker[0].modules()
             if isinstance(layer, torch.ao.nn.quantized.dynamic.Linear)]
    with FlopCounterMode(display=False) as counter:
        start = time.perf_counter()
        model.encoding(frames, k, "prompts")  # into the engine's cache, as a click would
        encode_seconds = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    encoder_flops = int(counter.get_total_flops()) + int8_flops[0]

    engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt((i, j, k)),)))  # warm, cached
    rng = np.random.default_rng(0)
    latencies = []
    for _ in range(clicks):
        point = (float(rng.integers(i - 30, i + 30)), float(rng.integers(j - 30, j + 30)), float(k))
        start = time.perf_counter()
        engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt(point),)))
        latencies.append(time.perf_counter() - start)
    return {"image_size": image_size, "tracker_parameters_millions": round(parameters / 1e6, 1),
            "precision_path": model.precision, "model_resident_mib": round(model_mib),
            "vision_encoding_seconds": round(encode_seconds, 2),
            "vision_encoder_gflop": round(encoder_flops / 1e9, 1),
            "vision_encoder_gflops_per_second": round(encoder_flops / 1e9 / encode_seconds, 1),
            "click_latency_median_seconds": round(statistics.median(latencies), 4),
            "click_latency_p90_seconds": round(float(np.percentile(latencies, 90)), 4),
            "clicks_measured": len(latencies)}


def measure_propagation(image_size: int, volume: Volume, propagation_slices: int, precision: str) -> dict:
    """Propagating one click through a few slices: first with encoding, then again from cached encodings (as a
    correction re-propagates)."""
    print(f"building the full-size tracker video model at {image_size} px ...", flush=True)
    video = _full_size("sam3_tracker_video", image_size)
    video_model = TransformersSegmentationModel.from_components({"sam3_tracker_video": video}, "full-size-random",
                                                                image_size=image_size, precision=precision)
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
            "propagation_seconds_per_slice_cached_encodings": round(cached, 3)}


def measure_agreement_figures(scale: str, image_size: int, fast_precision: str = "bfloat16") -> dict:
    """``fast_precision`` path ("bfloat16" or "int8") vs float32, same random weights, real CT and MRI slices,
    fixed prompts (see :mod:`medsam3.apps.bench.precision_agreement`). ``scale`` "full": the full-size tracker;
    "mid": a narrower ViT (used where bfloat16 is emulated: the full-size model would take hours)."""
    from .precision_agreement import (give_random_logits_a_trained_scale, load_agreement_volumes,
                                      measure_agreements, mid_size_tracker, summarise)

    if not SPLEEN_CT.exists():
        return {"skipped": "no ../shared/data"}
    print(f"agreement of {fast_precision} with float32 ({scale}-size tracker, real CT and MRI slices) ...",
          flush=True)
    if scale == "full":
        tracker, processor = _full_size("sam3_tracker", image_size)
        give_random_logits_a_trained_scale(tracker)
    else:
        image_size = 336
        tracker, processor = mid_size_tracker(image_size)
    results = measure_agreements(tracker, processor, image_size, load_agreement_volumes(), (True, False),
                                 fast_precision)
    figures = {"as_shipped": summarise(results[True]), "without_stability_fallback": summarise(results[False])}
    del tracker
    return {"model": f"{scale}-size Sam3TrackerModel at {image_size} px, random weights", **figures,
            "fast_precision": fast_precision,
            "note": f"random weights: this measures numerical drift of {fast_precision} against float32, not mask "
                    "quality"}


def run(sizes: list[int], clicks: int, propagation_slices: int, threads: int | None, precision: str,
        agreement: str = "auto") -> dict:
    """``precision``: one path or several, comma-separated ("float32,int8"): each is measured at every size."""
    from ...model.precision import choose_precision, cpu_features, int8_engine

    if threads:
        torch.set_num_threads(threads)
    precisions = [p.strip() for p in precision.split(",") if p.strip()] or ["auto"]
    plans = [choose_precision("cpu", p) for p in precisions]
    plan = plans[0]
    volume = benchmark_volume()
    print("timing matrix products (float32 and bfloat16, encoder shapes and 2048^2) ...", flush=True)
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpu_bfloat16_units": cpu_features().describe(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "slice_source": str(SPLEEN_CT) if SPLEEN_CT.exists() else "synthetic",
                          "precision": "; ".join(p.describe() for p in plans)},
              "matmul": matmul_table(), "sizes": []}
    for size in sizes:
        for name, path in zip(precisions, plans):
            # the int8 path's products are int8 ones, compared here with float32 matmul (no int8 figure)
            matmul = report["matmul"][path.name if path.name != "int8" else "float32"]["encoder_shapes_gflops"]
            result = (measure_clicks(size, volume, clicks, name)
                      | measure_propagation(size, volume, propagation_slices, name))
            result["path"] = path.name
            result["encoder_fraction_of_matmul_at_this_precision"] = round(
                result["vision_encoder_gflops_per_second"] / matmul, 3)
            result["encoder_fraction_of_bfloat16_matmul"] = round(
                result["vision_encoder_gflops_per_second"] / report["matmul"]["bfloat16"]["encoder_shapes_gflops"],
                3)
            report["sizes"].append(result)
    if agreement == "auto":
        agreement = "full" if cpu_features().native_bfloat16 else "mid"
    if agreement != "none":
        fast = [p.name for p in plans if p.name != "float32"] or \
            (["bfloat16", "int8"] if int8_engine() else ["bfloat16"])
        report["agreements"] = [measure_agreement_figures(agreement, min(sizes), name)
                                for name in dict.fromkeys(fast)]
    report["peak_resident_mib"] = round(peak_resident_mib(), 0)
    return report


def format_table(report: dict) -> str:
    machine, matmul = report["machine"], report["matmul"]
    lines = [f"machine: {machine['processor']} ({machine['cpu_bfloat16_units']}), {machine['threads']} threads, "
             f"torch {machine['torch']}", f"path: {machine['precision']}", "",
             f"{'matmul GFLOP/s':<34}{'float32':>10}  {'bfloat16':>10}"]
    for index, shape in enumerate(ENCODER_SHAPES):
        cells = [matmul[name]["encoder_shapes"][index] for name in ("float32", "bfloat16")]
        label = "x".join(map(str, shape))
        notes = [f"{c['rows_timed']} rows" for c in cells if c["rows_timed"] != shape[0]]
        lines.append(f"  {label:<32}{cells[0]['gflops']:>10}  {cells[1]['gflops']:>10}"
                     + (f"   (timed on {', '.join(notes)})" if notes else ""))
    lines.append(f"  {'encoder shapes (time-weighted)':<32}{matmul['float32']['encoder_shapes_gflops']:>10}  "
                 f"{matmul['bfloat16']['encoder_shapes_gflops']:>10}")
    lines.append(f"  {'2048^2':<32}{matmul['float32']['square_2048']['gflops']:>10}  "
                 f"{matmul['bfloat16']['square_2048']['gflops']:>10}")
    lines.append("")
    rows = [("input size (px)", "image_size", ""), ("path", "path", ""),
            ("vision encoding per slice", "vision_encoding_seconds", "s"),
            ("encoder work", "vision_encoder_gflop", "GFLOP"),
            ("encoder speed", "vision_encoder_gflops_per_second", "GFLOP/s"),
            ("  fraction of matmul, this path", "encoder_fraction_of_matmul_at_this_precision", ""),
            ("  fraction of bfloat16 matmul", "encoder_fraction_of_bfloat16_matmul", ""),
            ("click to mask, cached (median)", "click_latency_median_seconds", "s"),
            ("click to mask, cached (p90)", "click_latency_p90_seconds", "s"),
            ("propagation per slice, encoding", "propagation_seconds_per_slice_with_encoding", "s"),
            ("propagation per slice, cached", "propagation_seconds_per_slice_cached_encodings", "s"),
            ("loaded tracker resident", "model_resident_mib", "MiB")]
    for label, key, unit in rows:
        values = "  ".join(f"{size[key]!s:>10}" for size in report["sizes"])
        lines.append(f"{label:<34}{values} {unit}")
    lines.append(f"{'peak resident memory (process)':<34}{report['peak_resident_mib']:>10} MiB")
    for agreement in report.get("agreements", []):
        if "skipped" in agreement:
            continue
        lines += ["", f"{agreement['fast_precision']} vs float32 masks: {agreement['model']}, 8 prompts on a CT "
                      "and an MRI slice", f"  ({agreement['note']})"]
        for key, label in (("as_shipped", "as shipped"),
                           ("without_stability_fallback", "without SAM's stability fallback")):
            figures = agreement[key]
            lines.append(f"  {label:<36} Dice min {figures['dice_min']}, mean {figures['dice_mean']}; "
                         f"largest logit difference {figures['max_logit_difference']} "
                         f"({100 * figures['max_relative_logit_difference']:.1f} % of the largest logit)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medsam3 bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1008,504", help="input sizes in pixels, comma-separated")
    parser.add_argument("--clicks", type=int, default=20, help="clicks to time from a cached encoding (>= 20)")
    parser.add_argument("--propagation-slices", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto",
                        help="auto (the engine's choice: bfloat16 where this CPU computes it natively), float32, "
                             "bfloat16, int8, or several comma-separated (float32,int8), each measured")
    parser.add_argument("--agreement", choices=("auto", "full", "mid", "none"), default="auto",
                        help="bfloat16 vs float32 masks with the full-size tracker (auto: where bfloat16 is native) "
                             "or a mid-size one (auto elsewhere: emulated bfloat16 is slow)")
    parser.add_argument("--json", type=Path, default=Path("benchmark.json"), help="where to write the figures")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    report = run(sizes, max(1, args.clicks), max(1, args.propagation_slices), args.threads, args.precision,
                 args.agreement)
    args.json.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
