"""Wall time of the same 6-case batch run locally and on a two-worker local Ray cluster (the issue-12 figure).

    .venv/bin/python scripts/bench_batch.py [--model tiny-random] [--text liver] [--output DIR]

The cases are real volumes from ../shared/data: two CT NIfTIs, a NRRD breast MRI, a spinal-cord MRI NIfTI and
two DICOM series. Both runs go through ``medsam3 batch`` with ``--redo`` into separate folders; the Ray run's time
includes starting the cluster and loading the model in each worker. At the end the two runs' labelmaps and
.seg.nrrd files are compared byte for byte.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "MedicalSAM3Slicer"))
DATA = ROOT.parent / "shared" / "data"
CASES = ["ct/totalseg_example/ct_small.nii.gz", "ct/spleen_msd_crop/image.nii.gz", "mr/pyradiomics/breast1_image.nrrd",
         "mr/spinal_cord/unf01/sub-unf01_T2star.nii.gz", "ct/totalseg_example/dicom_series",
         "ct/dcmqi_3slice/ct-3slice"]


def timed_batch(arguments: list[str]) -> tuple[float, int, str]:
    from medsam3.apps.cli import main

    errors = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        code = main(["batch", *arguments])
    return time.perf_counter() - started, code, errors.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--text", default="liver")
    parser.add_argument("--output", default=str(ROOT / "output" / "bench-batch"))
    parser.add_argument("--local-threads", type=int, help="torch threads of the local run (default: torch's "
                                                          "choice; each Ray worker runs one)")
    args = parser.parse_args()
    import os

    import torch

    from medsam3.model.model_sources import resolve_model

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "MedicalSAM3Slicer"),
                                                             os.environ.get("PYTHONPATH")]))
    inputs = [str(DATA / case) for case in CASES]
    if args.local_threads:
        torch.set_num_threads(args.local_threads)
    if args.model == "tiny-random":
        resolve_model("tiny-random")  # built once before timing, as a downloaded model would be in the cache
    common = [*inputs, "--text", args.text, "--model", args.model, "--device", "cpu", "--redo"]
    output = Path(args.output)
    print(f"6 cases, model {args.model}, text {args.text!r}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}")
    local, code, errors = timed_batch([*common, "--output", str(output / "local")])
    print(f"local:            {local:7.1f} s (exit {code})")
    on_ray, code, errors = timed_batch([*common, "--output", str(output / "ray"), "--ray", "--workers", "2",
                                        "--cpus-per-worker", "1"])
    print(f"Ray, 2 workers:   {on_ray:7.1f} s (exit {code}; cluster start and two model loads included)")
    same = all((output / "local" / p.relative_to(output / "ray")).read_bytes() == p.read_bytes()
               for p in (output / "ray").rglob("*") if p.name.endswith((".nii.gz", ".seg.nrrd")))
    print(f"labelmaps and .seg.nrrd byte-identical: {same}")
    if code:
        print(errors[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
