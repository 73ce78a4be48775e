"""The main-job demo: segment the spleen on a real CT from the typed word "spleen" and one click, and write
labelmap, .seg.nrrd, overlay picture and a timing summary into one folder.

It uses the real default model when it can be had. Without network and local weights it says so in one line
and runs the same pipeline on the tiny random-weight model, labelling every output as a plumbing check.
Run it with ``scripts/demo.sh`` (sets up the environment first), ``medsam3 demo`` or ``python -m medsam3.apps.demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import numpy as np

from ..transports.backend_choice import open_backend
from .arguments import OneLineArgumentParser, add_backend_options, attach_coordinate_values, parse_point
from ..errors import MedSam3Error, ModelAccessError, ModelNotFoundError
from .segment_pipeline import OutputPaths, SegmentRequest, StepTimer, segment_volume, write_outputs
from ..files.volume_io import dicom_series_files, read_volume

DEMO_IMAGE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ct" / "spleen_msd_crop" / "image.nii.gz"
DEMO_TEXT = "spleen"
# A point inside the spleen of the demo CT (RAS mm; voxel i=90, j=83, k=15, near the middle of the spleen on its
# largest axial slice). tests/apps/cli/test_demo.py checks that it lies in the reference spleen mask.
DEMO_CLICK_RAS = (-334.66, -340.23, 75.0)
TINY_MODEL = "tiny-random"
PLUMBING_LABEL = "PLUMBING CHECK: tiny random-weight model, not a segmentation"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="medsam3 demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("image", nargs="?", default=str(DEMO_IMAGE), help="a CT file or DICOM folder "
                        "(default: the spleen CT in ../shared/data)")
    parser.add_argument("--output", default="medsam3-demo-output", help="the folder for every result")
    parser.add_argument("--text", default=DEMO_TEXT, help="the typed target (default: spleen)")
    parser.add_argument("--point", type=parse_point, metavar="X,Y,Z",
                        help="the click in RAS mm (default: inside the spleen of the demo CT)")
    add_backend_options(parser, remote=False, model_help="a model instead of the default (no tiny-model fallback "
                                                         "then)")
    return parser


def _click(args: argparse.Namespace) -> tuple[float, float, float] | None:
    if args.point:
        return args.point
    if Path(args.image).resolve() == DEMO_IMAGE.resolve():
        return DEMO_CLICK_RAS
    return None  # another image: the typed text alone, unless the user gives a click


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection (a quick look before a download with long retries)."""
    from huggingface_hub import constants

    address = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((address.hostname, address.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def work_offline() -> None:
    """Make the model resolver use the local cache only, without waiting on a network that is not there."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True  # read when a download is attempted; set too in case it was imported already


def load_demo_backend(backend_factory, model: str | None, device: str | None):
    """The requested or default model; the tiny random-weight model when the default cannot be had.

    Returns the backend and whether it is the plumbing-check fallback."""
    if model:
        return backend_factory(model, device, None, None), model == TINY_MODEL
    if not hub_reachable():
        work_offline()
    try:
        return backend_factory(None, device, None, None), False
    except (ModelNotFoundError, ModelAccessError):
        from ..model.model_sources import DEFAULT_MODEL_SOURCE

        print(f"No network and no local copy of the default model ({DEFAULT_MODEL_SOURCE}): running the same "
              "pipeline on the tiny random-weight model, as a plumbing check, not a segmentation.", flush=True)
        return backend_factory(TINY_MODEL, device, None, None), True


def run_demo(image: str | Path, output: str | Path, text: str = DEMO_TEXT,
             click_ras: tuple[float, float, float] | None = DEMO_CLICK_RAS, model: str | None = None,
             device: str | None = None, backend_factory=open_backend) -> dict:
    """Run the demo and return its summary (also written as ``timing.json`` in ``output``)."""
    started = time.perf_counter()
    output = Path(output)
    if not Path(image).exists():
        raise MedSam3Error(f"No CT at {image}: give the path of a CT file or DICOM folder "
                           "(scripts/demo.sh PATH).")
    timer = StepTimer()
    with timer.step("read_image"):
        volume = read_volume(image)
    with timer.step("load_model"):
        backend, plumbing_check = load_demo_backend(backend_factory, model, device)
    request = SegmentRequest(text=text, positive_points=(click_ras,) if click_ras else ())
    outcome = segment_volume(backend, volume, request, timer)
    if plumbing_check:
        outcome = outcome.renamed([f"{name} (plumbing check)" for name in outcome.segment_names])
    title = PLUMBING_LABEL if plumbing_check else f"medsam3 demo: '{text}' + one click"
    dicom = Path(image).is_dir()  # written as `medsam3 segment IMAGE -o FOLDER` writes them
    written = write_outputs(outcome, volume, OutputPaths.for_output(output, dicom=dicom), overlay_title=title,
                            timer=timer, source_files=dicom_series_files(image) if dicom else ())
    info = backend.info()
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    summary = {
        "image": str(image), "model": info.model, "device": info.device, "transport": info.transport,
        "plumbing_check": plumbing_check, "note": PLUMBING_LABEL if plumbing_check else "",
        "prompt": {"text": text, "click_ras_mm": list(click_ras) if click_ras else None},
        "segments": {name: {"voxels": int((outcome.labels == value).sum()),
                            "volume_ml": round(int((outcome.labels == value).sum()) * voxel_ml, 2),
                            "score": round(outcome.scores[name], 3)}
                     for value, name in enumerate(outcome.segment_names, start=1)},
        "seconds": {step: round(seconds, 3) for step, seconds in timer.seconds.items()},
        "total_seconds": round(time.perf_counter() - started, 3),
        "files": [p.name for p in written] + ["timing.json"],
    }
    (output / "timing.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def print_summary(summary: dict, output: str | Path) -> None:
    if summary["plumbing_check"]:
        print(summary["note"])
    print(f"model {summary['model']} on {summary['device']}")
    for name, segment in summary["segments"].items():
        print(f"  {name}: {segment['voxels']:,} voxels, {segment['volume_ml']} ml, score {segment['score']}")
    print("seconds: " + ", ".join(f"{step} {s}" for step, s in summary["seconds"].items())
          + f"; total {summary['total_seconds']}")
    print(f"results in {Path(output).resolve()}: {', '.join(summary['files'])}")


def main(argv: Sequence[str] | None = None, backend_factory=open_backend) -> int:
    """``python -m medsam3.apps.demo [IMAGE] [--output DIR]``; errors are one line on stderr (see medsam3.apps.cli)."""
    args = _parser().parse_args(attach_coordinate_values(sys.argv[1:] if argv is None else argv))
    summary = run_demo(args.image, args.output, args.text, _click(args), args.model, args.device, backend_factory)
    print_summary(summary, args.output)
    return 0


if __name__ == "__main__":
    from .cli import main as cli_main

    sys.argv.insert(1, "demo")  # run as the program `medsam3 demo …`: one-line errors, quiet library notices
    sys.exit(cli_main())
