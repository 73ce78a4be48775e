"""Resident memory of the loaded model, measured in a fresh process.

Inside a process that already holds models, tensors and the allocator's free lists, "resident after minus
resident before" measures nothing (the bench printed 0 and negative MiB that way). Here a new Python process
imports torch and the engine, notes its resident size, loads the model's classes one after the other through the
engine's own loading path (from a one-folder model, so that identical weights are held once as for a real
checkpoint), and reports its resident growth after each class and its peak.

Run by the bench (:func:`measure_resident`); by hand:
``python -m medsam3.apps.bench.resident FOLDER --precision bfloat16 --size 504``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# The detector (text) and the tracker (clicks) first: "detector and tracker" is the default model as a user
# loads it; the two video classes follow (propagation, text through the volume).
ROLES = ("sam3_tracker", "sam3", "sam3_tracker_video", "sam3_video")
DETECTOR_AND_TRACKER = ("sam3_tracker", "sam3")


def _resident_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1024**2


def _resident_split_mib() -> dict:
    """Linux: the resident memory's own (anonymous) part and its part mapped from files (the weights file that
    transformers maps while loading; the kernel may drop those pages under memory pressure, and re-read them)."""
    split = {}
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith(("RssAnon", "RssFile")):
                    key, value = line.split(":")
                    split[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return split


def _peak_mib() -> float:
    """This process's own peak: VmHWM on Linux (getrusage's maxrss survives fork and exec, so a process started
    by the bench would report the bench's own peak)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 1024**2


def load_and_measure(folder: Path, precision: str, image_size: int, roles=ROLES) -> dict:
    import gc

    import torch  # noqa: F401  (imported before the baseline: the library is not the model)

    from ...model.sam3.transformers_model import TransformersSegmentationModel

    gc.collect()
    baseline, baseline_split = _resident_mib(), _resident_split_mib()
    model = TransformersSegmentationModel(folder, "bench", image_size=image_size, precision=precision)
    growth = {}
    for role in roles:
        model.component(role)
        gc.collect()
        growth[role] = round(_resident_mib() - baseline)
    loaded = [role for role in roles if role in DETECTOR_AND_TRACKER]
    split = {key: round(value - baseline_split.get(key, 0)) for key, value in _resident_split_mib().items()}
    return {"precision": precision, "path": model.precision_plan.name, "image_size": image_size,
            "baseline_mib": round(baseline), "growth_after_each_class_mib": growth,
            "detector_and_tracker_mib": growth[loaded[-1]] if loaded else None,
            "all_classes_mib": growth[roles[-1]], "peak_mib": round(_peak_mib()),
            "all_classes_own_and_file_mapped_mib": split}


def measure_resident(folder: Path, precision: str, image_size: int, timeout: float = 1800) -> dict:
    """:func:`load_and_measure` in a fresh Python process (the same interpreter and import path)."""
    environment = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[3])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "medsam3.apps.bench.resident", str(folder), "--precision", precision,
               "--size", str(image_size)]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"precision": precision, "error": f"the fresh process failed: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medsam3.apps.bench.resident", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--size", type=int, default=504)
    args = parser.parse_args(argv)
    print(json.dumps(load_and_measure(args.folder, args.precision, args.size)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
