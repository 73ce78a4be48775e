"""``medsam3 evaluate``: its argument parser and the function that runs it (registered by medsam3.apps.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import MedSam3Error, require_extra
from ..arguments import add_backend_options, check_backend_options, trust_ca_file

DESCRIPTION = ("Measure the model on your own labelled data: Dice and NSD per structure from typed text, a "
               "simulated user's clicks (NoC@85/90, Dice against clicks) and one box, with seconds per "
               "interaction. DATA is an nnU-Net/MSD folder (imagesTr/, labelsTr/, dataset.json), a folder with "
               "images/, labels/ and labels.json, or challenge .npz files. A stopped run resumes where it stopped.")


class PipelineCheckFailed(MedSam3Error):
    """--check-pipeline found a compact structure the bright-region model did not get back at the first click."""


def add_evaluate_parser(commands) -> argparse.ArgumentParser:
    evaluate = commands.add_parser("evaluate", help="measure the model on your own labelled data",
                                   description=DESCRIPTION)
    evaluate.add_argument("data", metavar="DATA", help="the labelled data (folder or .npz file)")
    evaluate.add_argument("--output", default="medsam3-evaluation", metavar="DIR",
                          help="where results.csv, summary.json, the plots and report.md go "
                               "(default medsam3-evaluation)")
    evaluate.add_argument("--labels", metavar="FILE_OR_NAMES",
                          help="label names: a labels.json/labels.txt file or 1=liver,2=spleen (overrides the "
                               "data's own names)")
    evaluate.add_argument("--protocols", "--protocol", default="text,clicks,box",
                          help="which protocols, comma-separated: text, clicks, box (the default), and cvpr25 (the "
                               "CVPR 2025 challenge's box + 5 clicks chain and scoring)")
    evaluate.add_argument("--save-masks", action="store_true",
                          help="with cvpr25: save the label map after every step in DIR/masks/CASE/stepK.npz "
                               "(segs, for .npz input) or stepK.nii.gz")
    evaluate.add_argument("--max-clicks", type=int, default=10, help="clicks per structure (default 10)")
    evaluate.add_argument("--nsd-tolerance", type=float, default=2.0, metavar="MM",
                          help="NSD tolerance in millimetres (default 2, as the CVPR 2025 challenge)")
    evaluate.add_argument("--view", default="axial", choices=("axial", "coronal", "sagittal"),
                          help="the view clicks and boxes are placed in (default axial)")
    evaluate.add_argument("--max-cases", type=int, metavar="N", help="only the first N cases")
    evaluate.add_argument("--check-pipeline", action="store_true",
                          help="replace each image by its label drawn as intensity and use the bright-region "
                               "model: Dice at click 1 must be >= 0.95 for compact structures, else the geometry "
                               "of the data or the tool is wrong")
    evaluate.add_argument("--restart", action="store_true", help="start over instead of resuming in --output")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_options(evaluate)
    return evaluate


def _print_summary(summary: dict) -> None:
    for name, entry in summary["structures"].items():
        parts = []
        if "text" in entry:
            parts.append(f"text Dice {_figure(entry['text']['dice_mean'])}")
        if "clicks" in entry:
            per_click = entry["clicks"]["dice_per_click"]
            last = f", click {len(per_click)} {_figure(per_click[-1])}" if len(per_click) > 1 else ""
            parts.append(f"click 1 Dice {_figure(per_click[0])}{last}, "
                         f"NoC@85 {_figure(entry['clicks']['noc85_mean'], 1)}, "
                         f"NoC@90 {_figure(entry['clicks']['noc90_mean'], 1)}")
        if "box" in entry:
            parts.append(f"box Dice {_figure(entry['box']['dice_mean'])}")
        print(f"{name}: " + "; ".join(parts))
    challenge = summary.get("cvpr25")
    if challenge:
        mean = challenge["mean"]
        print(f"cvpr25 ({challenge['cases']} case{'' if challenge['cases'] == 1 else 's'}): DSC_AUC "
              f"{_figure(mean['DSC_AUC'])}, NSD_AUC {_figure(mean['NSD_AUC'])}, final DSC "
              f"{_figure(mean['DSC_Final'])}, final NSD {_figure(mean['NSD_Final'])} (true spacing: NSD_AUC "
              f"{_figure(mean['NSD_AUC_geometric'])}, final NSD {_figure(mean['NSD_Final_geometric'])})")
    check = summary.get("pipeline_check")
    if check:
        for result in check["per_case"]:
            print(f"  pipeline check {result['case']} / {result['structure']}: Dice at {result['prompt']} "
                  f"{_figure(result['dice_click_1'])}{'' if result['compact'] else ' (not compact: not judged)'}")


def _figure(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def run_evaluate(args: argparse.Namespace, backend_factory) -> int:
    require_extra("evaluation", "medsam3 evaluate")  # the NSD and the plots, checked before any case runs
    from .datasets import open_dataset
    from .report import write_report
    from .run import EvaluationSettings, pipeline_check_backend, run_evaluation

    settings = EvaluationSettings(protocols=tuple(p.strip() for p in args.protocols.split(",") if p.strip()),
                                  max_clicks=args.max_clicks, tolerance_mm=args.nsd_tolerance,
                                  check_pipeline=args.check_pipeline, axis=args.view,
                                  save_masks=args.save_masks).check()
    if args.check_pipeline and (args.model or args.server):
        raise MedSam3Error("--check-pipeline runs its own bright-region model in this process: leave out --model "
                           "and --server.")
    if args.check_pipeline and not {"clicks", "cvpr25"} & set(settings.protocols):
        raise MedSam3Error("--check-pipeline judges Dice at the first click (or the cvpr25 box): keep clicks or "
                           "cvpr25 in --protocols.")
    check_backend_options(args, "evaluate")
    trust_ca_file(args.ca_file, args.server)
    if args.max_cases is not None and args.max_cases < 1:
        raise MedSam3Error("--max-cases must be at least 1.")
    dataset = open_dataset(args.data, args.labels, names_needed=settings.protocols != ("cvpr25",))
    if args.max_cases:
        dataset.cases = dataset.cases[:args.max_cases]
    backend = pipeline_check_backend() if args.check_pipeline else \
        backend_factory(args.model, args.device, args.server, args.api_key)
    output = Path(args.output)
    run = run_evaluation(dataset, backend, settings, output, restart=args.restart, show_progress=not args.quiet)
    summary, written = write_report(run, output)
    _print_summary(summary)
    print("wrote " + ", ".join(str(p) for p in written))
    check = summary.get("pipeline_check")
    if check and not check["passed"]:
        failures = ", ".join(f"{f['case']}/{f['structure']} {_figure(f['dice_click_1'])}" for f in check["failures"])
        raise PipelineCheckFailed(f"pipeline check failed: Dice at the first prompt below {check['threshold']} for "
                                  f"{failures or 'every structure (none was evaluated)'}; clicks or masks land in "
                                  "the wrong place: check the label files' geometry against their images.")
    return 0
