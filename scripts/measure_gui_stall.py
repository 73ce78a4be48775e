"""How long Slicer's GUI is stalled while the background prefetch runs (issue 17, Medium 4), in the GIL imitation of
tests/bridge/test_slicer_worker_gil.py: the main loop idles in a C call that keeps the GIL (as Qt's event loop does
under PythonQt), and every 30 ms runs the module's delivery-timer slot ``logic.deliver_and_wait(worker)``.

The GUI can process no event while the slot runs (the slot waits with the GIL released so the prefetch thread can
run, then must get the GIL back), so the longest slot is the longest stall a user can feel. Prints the longest and
the median slot, and how long the prefetch took. A figure of a shared machine: run it alone for a clean one.

    PYTHONPATH=MedicalSAM3Slicer python scripts/measure_gui_stall.py --slices 24 --size 256 --radius 2
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

TIMER_INTERVAL_SECONDS = 0.030  # the widget's DELIVERY_INTERVAL_MS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--radius", type=int, default=2)
    parser.add_argument("--prefetch-wait", type=float, default=None, help="seconds per tick (default: the logic's)")
    args = parser.parse_args()

    import torch

    from slicer_scene import add_slice_node, load_volume_node, new_scene  # noqa: E402
    from medsam3.geometry.volume import Volume
    from medsam3.transports.model_loading import load_backend
    from MedicalSAM3SlicerLib.logic import PREFETCH_WAIT_SECONDS, MedicalSAM3SlicerLogic
    from MedicalSAM3SlicerLib.worker import ModelWorker

    torch.set_num_threads(1)
    prefetch_wait = PREFETCH_WAIT_SECONDS if args.prefetch_wait is None else args.prefetch_wait
    with tempfile.TemporaryDirectory() as directory:
        backend = load_backend("tiny-random", device="cpu", cache_dir=Path(directory) / "cache", progress=False,
                               bf16_autocast=False)
        logic = MedicalSAM3SlicerLogic(backend)
        scene = new_scene()
        worker = ModelWorker()
        sleep_holding_the_gil = ctypes.PyDLL(None).usleep
        rng = np.random.default_rng(0)

        def volume(name):
            array = rng.integers(-1000, 1000, (args.slices, args.size, args.size)).astype(np.int16)
            node = load_volume_node(scene, Volume(array, np.diag([0.8, 0.8, 2.0, 1.0]), modality="CT"),
                                    Path(directory), name=name)
            return node, add_slice_node(scene, "axial", [0.0, 0.0, args.slices])

        logic.prefetch_around(*volume("warm-up"), radius=1)
        logic.wait_for_prefetch(600)
        node, view = volume("measured")
        slots = []
        start = next_tick = time.perf_counter()
        logic.prefetch_around(node, view, radius=args.radius)
        working = True
        while working:
            next_tick += TIMER_INTERVAL_SECONDS
            idle = next_tick - time.perf_counter()
            if idle > 0:
                sleep_holding_the_gil(int(idle * 1e6))  # Qt idling, GIL held
            slot_start = time.perf_counter()
            working = logic.deliver_and_wait(worker, prefetch_wait=prefetch_wait)
            slots.append(time.perf_counter() - slot_start)
        total = time.perf_counter() - start
        worker.shutdown()
        logic.close()
    print(f"prefetch of {2 * args.radius + 1} slices of {args.size}x{args.size} (tiny model), prefetch wait "
          f"{prefetch_wait * 1000:.0f} ms per {TIMER_INTERVAL_SECONDS * 1000:.0f} ms tick: {total:.2f} s, "
          f"{len(slots)} ticks; GUI stall per tick: longest {max(slots) * 1000:.1f} ms, median "
          f"{statistics.median(slots) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
