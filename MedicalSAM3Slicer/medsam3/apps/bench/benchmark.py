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
import os
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
from ...model.cpu_speed import cpu_name
from ...model.sam3.transformers_model import TransformersSegmentationModel
from ...geometry.volume import Volume

SPLEEN_CT = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "ct" / "spleen_msd_crop" / "image.nii.gz"


def peak_resident_mib() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 1024**2


def resident_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1024**2


def _full_size(role: str, image_size: int):
    """A full-size model of one class with random weights, and its processor, at an input size (``--model tiny``:
    the tiny random model of that class, at its own size)."""
    if TINY[0]:
        from ...model.sam3.model_classes import MODEL_CLASSES
        from ...model.sam3.processors import build_processor
        from ...model.sam3.tiny_models import TINY_IMAGE_SIZE
        from .full_size import tiny_folder

        model = MODEL_CLASSES[role].from_pretrained(tiny_folder() / role).eval()
        return model, build_processor(role, TINY_IMAGE_SIZE)
    from transformers import Sam3TrackerConfig, Sam3TrackerModel, Sam3TrackerVideoConfig, Sam3TrackerVideoModel

    from ...model.sam3.processors import build_processor
    from ...model.sam3.transformers_model import resize_config

    config_class, model_class = {"sam3_tracker": (Sam3TrackerConfig, Sam3TrackerModel),
                                 "sam3_tracker_video": (Sam3TrackerVideoConfig, Sam3TrackerVideoModel)}[role]
    config = config_class.from_dict(resize_config(config_class(image_size=image_size).to_dict()
                                                  if role == "sam3_tracker_video" else config_class().to_dict(),
                                                  image_size))
    torch.manual_seed(0)
    model = model_class(config).eval()
    return model, build_processor(role, image_size)


TINY = [False]  # set by ``--model tiny`` for the run


def benchmark_volume() -> Volume:
    if SPLEEN_CT.exists():
        from ...files.volume_io import read_volume

        return read_volume(SPLEEN_CT)
    rng = np.random.default_rng(0)
    return Volume(rng.normal(0, 200, (26, 166, 164)).astype(np.int16), np.diag([0.8, 0.8, 5.0, 1.0]))


def measure_clicks(image_size: int, volume: Volume, clicks: int, precision: str) -> dict:
    """Encoding one slice (timed once, its FLOPs counted in that same pass) and decoding clicks from the cached
    encoding, through the engine. (The loaded model's memory is measured in a fresh process: see
    :mod:`medsam3.apps.bench.resident`.)"""
    print(f"building the full-size tracker at {image_size} px (random weights) ...", flush=True)
    tracker = _full_size("sam3_tracker", image_size)
    parameters = sum(p.numel() for p in tracker[0].parameters())
    model = TransformersSegmentationModel.from_components({"sam3_tracker": tracker}, "full-size-random",
                                                          image_size=image_size, precision=precision)
    engine = SegmentationEngine(model)
    frames = engine.frames(volume, "axial")
    i, j, k = (n // 2 for n in volume.shape_ijk)

    from .flops import flop_counter

    print(f"encoding one slice at {image_size} px ...", flush=True)
    int8_flops = [0]  # the FLOP counter does not see int8 products: counted from the layers' shapes

    def count_int8(layer, inputs, output):
        int8_flops[0] += 2 * inputs[0].numel() * layer.out_features

    hooks = [layer.register_forward_hook(count_int8) for layer in tracker[0].modules()
             if isinstance(layer, torch.ao.nn.quantized.dynamic.Linear)]
    with flop_counter() as counter:
        start = time.perf_counter()
        model.encoding(frames, k, "prompts")  # into the engine's cache, as a click would
        encode_seconds = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    encoder_flops = int(counter.get_total_flops()) + int8_flops[0]

    with flop_counter() as click_counter:  # warm, cached; its work counted
        engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt((i, j, k)),)))
    rng = np.random.default_rng(0)
    latencies = []
    for _ in range(clicks):
        point = (float(rng.integers(i - 30, i + 30)), float(rng.integers(j - 30, j + 30)), float(k))
        start = time.perf_counter()
        engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt(point),)))
        latencies.append(time.perf_counter() - start)
    return {"image_size": image_size, "tracker_parameters_millions": round(parameters / 1e6, 1),
            "precision_path": model.precision,
            "vision_encoding_seconds": round(encode_seconds, 2),
            "vision_encoder_gflop": round(encoder_flops / 1e9, 1),
            "vision_encoder_gflops_per_second": round(encoder_flops / 1e9 / encode_seconds, 1),
            "click_latency_median_seconds": round(statistics.median(latencies), 4),
            "click_latency_p90_seconds": round(float(np.percentile(latencies, 90)), 4),
            "click_gflop": round(click_counter.get_total_flops() / 1e9, 3),
            "clicks_measured": len(latencies)}


def measure_propagation(image_size: int, volume: Volume, propagation_slices: int, precision: str) -> dict:
    """Propagating one click through a clip of slices (see :mod:`medsam3.apps.bench.propagation`)."""
    from .propagation import measure_propagation as measure

    print(f"building the full-size tracker video model at {image_size} px ...", flush=True)
    return measure(_full_size("sam3_tracker_video", image_size), image_size, volume, propagation_slices, precision)


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
    if scale == "full":  # the fast path changes the video tracker's memory attention too
        from .propagation_agreement import measure_propagation_agreement, tracking_that_reads_its_memory

        print(f"agreement of {fast_precision} with float32 propagation (full-size tracker video model) ...",
              flush=True)
        video, video_processor = _full_size("sam3_tracker_video", image_size)
        figures["propagation"] = summarise(measure_propagation_agreement(
            (tracking_that_reads_its_memory(video), video_processor), image_size, fast_precision=fast_precision))
        del video
    return {"model": f"{scale}-size Sam3TrackerModel at {image_size} px, random weights", **figures,
            "fast_precision": fast_precision,
            "note": f"random weights: this measures numerical drift of {fast_precision} against float32, not mask "
                    "quality"}


def run(sizes: list[int], clicks: int, propagation_slices: int, threads: int | None, precision: str,
        agreement: str = "auto", tiny: bool = False) -> dict:
    """``precision``: one path or several, comma-separated ("float32,int8"): each is measured at every size.
    ``tiny``: the tiny random models at their own size (seconds; the bench's own test), else full size."""
    from ...model.sam3.precision import choose_precision, cpu_features, int8_engine
    from .ceiling import add_floors, fraction_of_ceiling, matmul_ceiling, vit_shapes
    from .full_size import full_size_folder, tiny_folder
    from .propagation import tracker_seconds
    from .resident import measure_resident
    from .whole_volume import measure_whole_volume

    TINY[0] = tiny
    if threads:
        torch.set_num_threads(threads)
    if tiny:
        from ...model.sam3.tiny_models import TINY_IMAGE_SIZE

        sizes = [TINY_IMAGE_SIZE]
        agreement = "none"
    precisions = [p.strip() for p in precision.split(",") if p.strip()] or ["auto"]
    plans = [choose_precision("cpu", p) for p in precisions]
    volume = benchmark_volume()
    print("timing matrix products (float32 and bfloat16, 2048^2, 4096^2 and the ViT's own shapes) ...", flush=True)
    ceiling = matmul_ceiling(sizes, tiny, seconds=0.05 if tiny else 0.5,
                             vit_shape_of=(lambda size: vit_shapes(size, 64, 128, window=8)) if tiny else vit_shapes)
    report = {"machine": {"platform": platform.platform(), "processor": cpu_name(),
                          "cpu_bfloat16_units": cpu_features().describe(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "load_average": [round(x, 2) for x in os.getloadavg()],
                          "model": "tiny random" if tiny else "full size, random weights",
                          "slice_source": str(SPLEEN_CT) if SPLEEN_CT.exists() else "synthetic",
                          "precision": "; ".join(p.describe() for p in plans)},
              "ceiling": ceiling, "sizes": [], "whole_volume": [], "resident": []}
    folder = tiny_folder() if tiny else full_size_folder()
    for size in sizes:
        for name, path in zip(precisions, plans):
            result = (measure_clicks(size, volume, clicks, name)
                      | measure_propagation(size, volume, propagation_slices, name))
            result["path"] = path.name
            report["sizes"].append(result)
    whole_size = min(sizes) if tiny else 504
    for name, path in zip(precisions, plans):
        tracker = next((tracker_seconds(r) for r in report["sizes"]
                        if r["path"] == path.name and r["image_size"] == whole_size), None)
        if tracker is None:
            tracker = tracker_seconds(measure_propagation(whole_size, volume, propagation_slices, name))
        report["whole_volume"].append(measure_whole_volume(folder, name, whole_size, volume, tracker))
        print(f"loaded model's resident memory, {path.name} path (a fresh process) ...", flush=True)
        report["resident"].append(measure_resident(folder, name, whole_size))
    # fractions once every encoder figure is in: a faster encoder raises the ceiling before any is computed
    for result in report["sizes"]:
        if result["path"] in ceiling:
            fraction_of_ceiling(ceiling, result["path"], result["vision_encoder_gflops_per_second"])
    for result in report["sizes"]:
        add_floors(result, ceiling)
        speed = result["vision_encoder_gflops_per_second"]
        result["encoder_fraction_of_ceiling_this_path"] = (fraction_of_ceiling(ceiling, result["path"], speed)
                                                           if result["path"] in ceiling else "n/a")
        result["encoder_fraction_of_bfloat16_ceiling"] = round(speed / ceiling["bfloat16"]["ceiling_gflops"], 3) \
            if result["path"] != "int8" else "n/a"
    if not tiny:
        from ...model.cpu_speed import write_measured
        from ...model.model_sources import cache_directory

        for entry in report["whole_volume"]:
            encode = entry["seconds_per_slice"]["vision_encoding"]
            report["machine"]["cached_figures"] = str(write_measured(
                cache_directory(), entry["path"], torch.get_num_threads(), entry["whole_volume_seconds"], encode,
                entry["seconds_per_slice"]))
    if agreement == "auto":
        agreement = "full" if cpu_features().native_bfloat16 else "mid"
    if agreement != "none":
        fast = [p.name for p in plans if p.name != "float32"] or \
            (["bfloat16", "int8"] if int8_engine() else ["bfloat16"])
        report["agreements"] = [measure_agreement_figures(agreement, min(sizes), name)
                                for name in dict.fromkeys(fast)]
    report["peak_resident_mib"] = round(peak_resident_mib(), 0)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def format_table(report: dict) -> str:
    from .ceiling import format_ceiling
    from .whole_volume import format_whole_volume

    machine = report["machine"]
    lines = [f"machine: {machine['processor']} ({machine['cpu_bfloat16_units']}), {machine['threads']} threads, "
             f"torch {machine['torch']}; load average {machine['load_average']} at the start, "
             f"{machine.get('load_average_at_end')} at the end", f"model: {machine['model']}",
             f"path: {machine['precision']}", "", *format_ceiling(report["ceiling"]), ""]
    rows = [("input size (px)", "image_size", ""), ("path", "path", ""),
            ("vision encoding per slice", "vision_encoding_seconds", "s"),
            ("encoder work", "vision_encoder_gflop", "GFLOP"),
            ("encoder speed", "vision_encoder_gflops_per_second", "GFLOP/s"),
            ("  fraction of ceiling, this path", "encoder_fraction_of_ceiling_this_path", ""),
            ("  fraction of bfloat16 ceiling", "encoder_fraction_of_bfloat16_ceiling", ""),
            ("click to mask, cached (median)", "click_latency_median_seconds", "s"),
            ("click to mask, cached (p90)", "click_latency_p90_seconds", "s"),
            ("  its work", "click_gflop", "GFLOP"),
            ("  at the float32 ceiling", "click_floor_seconds_float32", "s"),
            ("propagation per slice, encoding", "propagation_seconds_per_slice_with_encoding", "s"),
            ("propagation per slice, cached", "propagation_seconds_per_slice_cached_encodings", "s"),
            ("  the same, full memory", "propagation_seconds_per_slice_full_memory", "s"),
            ("  its work", "propagation_gflop_per_slice_full_memory", "GFLOP"),
            ("  at the float32 ceiling", "propagation_floor_seconds_full_memory_float32", "s"),
            ("  at the bfloat16 ceiling", "propagation_floor_seconds_full_memory_bfloat16", "s")]
    for label, key, unit in rows:
        values = "  ".join(f"{size.get(key, 'n/a')!s:>10}" for size in report["sizes"])
        lines.append(f"{label:<34}{values} {unit}")
    lines += format_whole_volume(report["whole_volume"])
    lines += ["", "loaded model, resident growth in a fresh process (detector and tracker; all four classes)"]
    for entry in report["resident"]:
        if "error" in entry:
            lines.append(f"  {entry['precision']:<10} not measured: {entry['error']}")
            continue
        split = entry.get("all_classes_own_and_file_mapped_mib", {})
        lines.append(f"  {entry['path']:<10} {entry['detector_and_tracker_mib']:>7} MiB; all classes "
                     f"{entry['all_classes_mib']} MiB (own {split.get('RssAnon', '?')} + file-mapped "
                     f"{split.get('RssFile', '?')}); that process's peak {entry['peak_mib']} MiB "
                     f"(at {entry['image_size']} px)")
    lines.append(f"{'peak resident memory (bench process)':<34}{report['peak_resident_mib']:>10} MiB")
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
        if "propagation" in agreement:
            figures = agreement["propagation"]
            lines.append(f"  {'propagation, ' + str(figures['prompts']) + ' tracked slices':<36} Dice min "
                         f"{figures['dice_min']}, mean {figures['dice_mean']}; largest logit difference "
                         f"{figures['max_logit_difference']} ({100 * figures['max_relative_logit_difference']:.1f} "
                         "% of the largest logit; one click on each slice, propagated forward)")
    if not report.get("agreements"):
        lines += ["", "agreement of bfloat16 with float32: not run (--agreement none or --model tiny)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medsam3 bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1008,504", help="input sizes in pixels, comma-separated")
    parser.add_argument("--clicks", type=int, default=20, help="clicks to time from a cached encoding (>= 20)")
    parser.add_argument("--propagation-slices", type=int, default=10,
                        help="slices in the propagation clip; more than the tracker's 7 remembered frames to "
                             "time slices tracked with a full memory, as in a long propagation")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto",
                        help="auto (the engine's choice: bfloat16 where this CPU computes it natively), float32, "
                             "bfloat16, int8, or several comma-separated (float32,int8), each measured")
    parser.add_argument("--agreement", choices=("auto", "full", "mid", "none"), default="auto",
                        help="bfloat16 vs float32 masks with the full-size tracker (auto: where bfloat16 is native) "
                             "or a mid-size one (auto elsewhere: emulated bfloat16 is slow)")
    parser.add_argument("--model", choices=("full", "tiny"), default="full",
                        help="full: the full-size architecture with random weights (default); tiny: the tiny random "
                             "models (seconds: a check of the bench itself, its figures say nothing of the machine)")
    parser.add_argument("--json", type=Path, default=Path("benchmark.json"), help="where to write the figures")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    report = run(sizes, max(1, args.clicks), max(1, args.propagation_slices), args.threads, args.precision,
                 args.agreement, tiny=args.model == "tiny")
    args.json.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
