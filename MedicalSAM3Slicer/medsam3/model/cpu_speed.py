"""What a CPU user should expect on this machine: the figure the CPU warning quotes.

The figure is text through a 100-slice CT at 504 px with the authors' protocol (every slice encoded once), in
seconds, and the first click on a new slice. It comes from ``medsam3 bench``'s own measurement on this machine
when there is one (the bench writes a small JSON into the engine's cache, see :func:`write_measured`), else from
an estimate: the vision encoder's work at 504 px over this CPU's matrix-multiply speed at the path's precision
(timed here in a fraction of a second), at the fraction of that speed the encoder reaches. The estimate covers
the vision encoding alone (the larger part of the time) and says so.
"""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

SUMMARY_FILE = "cpu_speed.json"
WHOLE_VOLUME_SLICES = 100
WHOLE_VOLUME_SIZE = 504
# The ViT's work per slice (FLOPs of its matrix products, as torch's FLOP counter counts them on the full-size
# model; ``medsam3 bench`` prints the figure it measured): at 504 and at 1008 px.
VIT_GFLOP = {504: 1445.0, 1008: 4833.0}
# The fraction of its matrix-multiply ceiling the encoder reaches, used only for the estimate (the bench measured
# 0.55 to 0.78 across machines and precisions): a lower figure, so the estimate errs on the slow side.
ESTIMATE_ENCODER_FRACTION = 0.55


def cpu_name() -> str:
    """This CPU's model name (Linux: /proc/cpuinfo; elsewhere what platform knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine_key(path: str, threads: int) -> dict:
    return {"cpu": cpu_name(), "threads": threads, "path": path}


def write_measured(cache_dir: Path, path: str, threads: int, whole_volume_seconds: float,
                   slice_encoding_seconds: float, breakdown: dict) -> Path:
    """The bench's measured figures for this machine and precision path, kept beside the others measured."""
    file = Path(cache_dir) / SUMMARY_FILE
    entries = _read(file)
    key = _machine_key(path, threads)
    entries = [entry for entry in entries if entry.get("machine") != key]
    entries.append({"machine": key, "whole_volume_seconds": round(whole_volume_seconds, 1),
                    "slice_encoding_seconds": round(slice_encoding_seconds, 2), "breakdown": breakdown,
                    "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d")})
    file.write_text(json.dumps(entries, indent=1))
    return file


def _read(file: Path) -> list[dict]:
    try:
        entries = json.loads(file.read_text())
    except (OSError, ValueError):
        return []
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def measured(cache_dir: Path, path: str, threads: int) -> dict | None:
    """The bench's figures for this CPU, thread count and precision path, if it ran here."""
    key = _machine_key(path, threads)
    return next((entry for entry in _read(Path(cache_dir) / SUMMARY_FILE) if entry.get("machine") == key
                 and isinstance(entry.get("whole_volume_seconds"), (int, float))), None)


def quick_matmul_gflops(path: str, size: int = 512, repeats: int = 3) -> float:
    """This CPU's matrix-multiply speed at the path's precision: the best of a few size^3 products."""
    import torch

    dtype = torch.bfloat16 if path == "bfloat16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def cpu_warning(cache_dir: Path, path: str, threads: int, image_size: int, matmul_gflops=quick_matmul_gflops) -> str:
    """The CPU warning with this machine's figures: measured by the bench when it ran here, else estimated
    (``matmul_gflops(path)`` gives the matrix-multiply speed the estimate starts from)."""
    entry = measured(cache_dir, path, threads)
    if entry is not None:
        volume = _duration(entry["whole_volume_seconds"])
        slice_seconds = entry["slice_encoding_seconds"] * (VIT_GFLOP.get(image_size, VIT_GFLOP[1008])
                                                           / VIT_GFLOP[WHOLE_VOLUME_SIZE])
        source = f"measured by 'medsam3 bench' here on {entry.get('measured', 'an earlier day')}"
        volume_text = f"text through a {WHOLE_VOLUME_SLICES}-slice CT at {WHOLE_VOLUME_SIZE} px takes about {volume}"
    else:
        speed = ESTIMATE_ENCODER_FRACTION * float(matmul_gflops(path))
        per_slice_504 = VIT_GFLOP[WHOLE_VOLUME_SIZE] / speed
        slice_seconds = VIT_GFLOP.get(image_size, VIT_GFLOP[1008]) / speed
        source = ("estimated from this CPU's matrix-multiply speed; run 'medsam3 bench' once for a measured "
                  "figure")
        volume_text = (f"text through a {WHOLE_VOLUME_SLICES}-slice CT at {WHOLE_VOLUME_SIZE} px takes at least "
                       f"{_duration(WHOLE_VOLUME_SLICES * per_slice_504)} (the slices' encoding alone)")
    return (f"Running on the CPU ({path}, {threads} threads): {volume_text}, and the first click on each new slice "
            f"about {_duration(slice_seconds)} (the slice is encoded once; later clicks on it are fast) - {source}. "
            "A CUDA GPU or a remote server makes this interactive.")
