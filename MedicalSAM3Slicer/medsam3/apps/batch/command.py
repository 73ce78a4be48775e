"""The ``medsam3 batch`` sub-command: its arguments, and the run from inputs to the summary table and exit code."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ...errors import PromptError, VolumeError, require_extra
from ..arguments import add_backend_options
from ..segment_pipeline import SegmentRequest
from .case_runner import BackendFactory, CaseJob, LazyBackend, base_record
from .cases import Case, discover_cases
from .journal import Journal, case_key
from .progress import Progress, summary_table
from .prompts_csv import CasePrompts, prompts_for_cases, read_prompts_csv

EXIT_SOME_FAILED = 1


def add_batch_parser(commands) -> argparse.ArgumentParser:
    """Add ``batch`` to the ``medsam3`` sub-commands."""
    batch = commands.add_parser(
        "batch", help="segment a cohort (files, folders, DICOM studies, dataset.json), here or on a Ray cluster",
        description="Segment every case in INPUTS and write, per case, a labelmap and a .seg.nrrd (and a DICOM "
                    "SEG for DICOM input) into DIR/<case>/, with one line per case in DIR/batch-log.jsonl. Cases "
                    "already done with the same inputs and settings are skipped; a failing case is logged and the "
                    "others go on; the exit status is 1 when any case failed.")
    batch.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="image files, folders of them, DICOM study folders (one case per series), dataset.json")
    batch.add_argument("--text", default="", help='what to segment in every case, e.g. "liver, spleen"')
    batch.add_argument("--prompts", metavar="CSV", help="clicks and boxes per case (columns case,kind,x,y,z,x2,y2,z2,"
                                                        "space; space ras or ijk)")
    batch.add_argument("--output", required=True, metavar="DIR", help="where results and the log go")
    batch.add_argument("--view", default="axial", choices=("axial", "coronal", "sagittal"),
                       help="the view clicks and boxes are placed in (default axial)")
    batch.add_argument("--redo", action="store_true", help="run every case, also those already done")
    add_backend_options(batch, remote=False, device_help="cpu, cuda, cuda:1, mps (default: the best available; on "
                                                          "Ray: a GPU per worker when the cluster has GPUs)")
    batch.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="run on Ray: a local cluster on this machine, or the cluster at ADDRESS "
                            "(e.g. auto, ray://head:10001)")
    batch.add_argument("--workers", type=int, metavar="N", help="Ray workers (default: one per GPU, else one per "
                                                                 "--cpus-per-worker CPUs)")
    batch.add_argument("--cpus-per-worker", type=int, metavar="N", help="CPUs of a Ray worker without GPU (default 4)")
    return batch


def _request(text: str, view: str, prompts: CasePrompts | None) -> SegmentRequest:
    prompts = prompts or CasePrompts()
    return SegmentRequest(text=text, view=view, whole_volume=True, segment_name=prompts.name, **prompts.placed())


def _requests(cases: list[Case], text: str, view: str, prompts: dict[str, CasePrompts]) -> dict[str, SegmentRequest]:
    """Every case's request, checked before any model is loaded."""
    requests = {}
    for case in cases:
        request = _request(text, view, prompts.get(case.case_id))
        try:
            request.check()
        except PromptError as error:
            raise PromptError(f"case {case.case_id}: {error}") from None
        requests[case.case_id] = request
    return requests


def _job(case: Case, request: SegmentRequest, model: str | None, output: Path, earlier: dict) -> CaseJob:
    """The case's job and key; the input's bytes are hashed unless they are unchanged since they last were."""
    try:
        stat = case.stat_digest()
        sha256 = earlier["input_sha256"] if earlier.get("input_stat") == stat else case.fingerprint()
    except OSError as error:  # unreadable input: the case fails when it is read, with that error
        return CaseJob(case, request, f"unreadable: {error}", str(output / case.case_id))
    return CaseJob(case, request, case_key(sha256, request, model), str(output / case.case_id), stat, sha256)


def _skipped_record(job: CaseJob, earlier: dict) -> dict:
    return {**base_record(job, "skipped"), "outputs": earlier.get("outputs", []),
            "output_sha256": earlier.get("output_sha256", {}),
            "segments": earlier.get("segments", []),
            "notes": [f"done on {earlier.get('finished', 'an earlier run')} with the same inputs and settings"],
            "model": earlier.get("model"), "engine_version": earlier.get("engine_version"), "seconds": 0.0}


def run_batch(args: argparse.Namespace, backend_factory: BackendFactory) -> int:
    started = time.perf_counter()
    inputs, ray_address = list(args.inputs), args.ray
    if ray_address and Path(ray_address).exists():  # "--ray case.nii.gz": the path was an input, not an address
        inputs, ray_address = [ray_address, *inputs], "local"
    if ray_address:
        require_extra("ray", "medsam3 batch --ray")
    for option in ("workers", "cpus_per_worker"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise VolumeError(f"--{option.replace('_', '-')} must be at least 1.")
    cases = discover_cases(inputs)
    prompts = prompts_for_cases(read_prompts_csv(args.prompts), cases) if args.prompts else {}
    requests = _requests(cases, args.text, args.view, prompts)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise VolumeError(f"--output {output} is a file: give a folder (it is created if needed).")
    journal = Journal(output)
    earlier = {} if args.redo else journal.finished_with()
    progress = Progress(len(cases))
    progress.note(f"medsam3 batch: {len(cases)} cases -> {output}")
    records: list[dict] = []

    def finished(record: dict) -> None:
        journal.append(record)
        progress.case_finished(record)
        records.append(record)

    jobs = []
    for case in cases:
        job = _job(case, requests[case.case_id], args.model, output, earlier.get(case.case_id, {}))
        if earlier.get(case.case_id, {}).get("key") == job.key:
            finished(_skipped_record(job, earlier[case.case_id]))
        else:
            jobs.append(job)
    if jobs and ray_address:
        from .ray_runner import RayPlan, run_on_ray

        run_on_ray(jobs, backend_factory, args.model, args.device,
                   RayPlan(ray_address, args.workers, args.cpus_per_worker), finished, progress)
    elif jobs:
        from .local import run_local

        run_local(jobs, LazyBackend(backend_factory, args.model, args.device), finished)
    order = {case.case_id: index for index, case in enumerate(cases)}
    records.sort(key=lambda r: order.get(r["case"], len(order)))
    print(summary_table(records, time.perf_counter() - started))
    print(f"log: {journal.path}")
    sys.stdout.flush()
    return EXIT_SOME_FAILED if any(r["status"] == "failed" for r in records) else 0
