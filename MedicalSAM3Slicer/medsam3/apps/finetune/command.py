"""``medsam3 finetune``: its argument parser and the function that runs it (registered by medsam3.apps.cli).

Every check of the input runs before anything is written: no label names, a label name that maps to nothing or to
no voxel, a data set with one case, an output folder that exists. Training state (the checkpoint ``--resume``
continues from) lives in ``MODEL_DIR.training/`` beside the output; the model folder itself appears only when it
is complete (:mod:`medsam3.training.model_folder`).
"""

from __future__ import annotations

import argparse
import shutil
import signal
from pathlib import Path

from ...errors import MedSam3Error, require_extra

DESCRIPTION = ("Teach the model your own structures: fine-tune Medical SAM3's text detector on labelled cases and "
               "save a model folder that segment, serve, evaluate and the Slicer module load by path. DATA is "
               "anything 'medsam3 evaluate' reads: an nnU-Net/MSD folder, a folder with images/, labels/ and "
               "labels.json (labels may be Slicer .seg.nrrd files with named segments), or challenge .npz files. "
               "Whole cases are kept aside (--holdout) and the base and fine-tuned models are compared on them.")
FULL_SIZE_PARAMETERS = 100_000_000  # a detector above this size is refused on a CPU without --force


def add_finetune_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("finetune", help="fine-tune the model on your own labelled cases",
                                 description=DESCRIPTION)
    parser.add_argument("data", metavar="DATA", help="the labelled cases (folder or .npz file)")
    parser.add_argument("--output", required=True, metavar="MODEL_DIR",
                        help="the new model folder (must not exist)")
    parser.add_argument("--base", metavar="MODEL", help="the model to start from (default: the default model; "
                                                        "any source --model takes)")
    parser.add_argument("--labels", metavar="FILE_OR_NAMES", help="label names (labels.json/.txt or 1=liver,...), "
                                                                  "overriding the data's own")
    parser.add_argument("--train", default="heads", choices=("heads", "lora", "all"),
                        help="heads (default): DETR decoder, segmentation head, scoring and presence; lora: also "
                             "LoRA adapters on the ViT and the text encoder (merged at the end); all: everything "
                             "(needs a large GPU)")
    parser.add_argument("--steps", type=int, default=500, help="optimiser steps (default 500)")
    parser.add_argument("--accumulate", type=int, default=1, help="slices per optimiser step (default 1)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    parser.add_argument("--holdout", type=float, default=0.2,
                        help="fraction of the cases kept aside for the before/after comparison (default 0.2)")
    parser.add_argument("--checkpoint-every", type=int, default=50, metavar="N", help="steps between checkpoints")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the split, the sampler and dropout")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run from its last checkpoint")
    parser.add_argument("--force", action="store_true", help="train a full-size model on a CPU anyway")
    parser.add_argument("--device", help="cuda, cpu, mps, or auto (default: CUDA when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _split(case_ids: list[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    import numpy as np

    count = 0 if holdout <= 0 else min(len(case_ids) - 1, max(1, round(holdout * len(case_ids))))
    order = np.random.default_rng(seed).permutation(len(case_ids))
    held_out = sorted(case_ids[i] for i in order[:count])
    return [c for c in case_ids if c not in held_out], held_out


def _check_arguments(args: argparse.Namespace, output: Path, state: Path) -> None:
    if args.steps < 1 or args.accumulate < 1 or args.checkpoint_every < 1:
        raise MedSam3Error("--steps, --accumulate and --checkpoint-every must be at least 1.")
    if not 0 <= args.holdout < 1:
        raise MedSam3Error(f"--holdout {args.holdout}: give a fraction from 0 up to (not including) 1, e.g. 0.2.")
    if output.exists():
        raise MedSam3Error(f"{output} already exists: give a new folder for the fine-tuned model (nothing was "
                           "changed).")
    if state.exists() and not args.resume:
        raise MedSam3Error(f"A stopped fine-tuning run of {output} is in {state}: add --resume to continue it, or "
                           "remove that folder to start over.")
    if args.train == "lora":
        require_extra("finetune", "medsam3 finetune --train lora")  # before a model loads or a folder is made
    if args.resume and not state.exists():
        raise MedSam3Error(f"--resume: there is no stopped run of {output} ({state} does not exist); leave out "
                           "--resume to start.")


def _load_data(args: argparse.Namespace):
    """(dataset, training cases, held-out cases, structures), every refusal before anything is written."""
    from ...training.slices import LabelledVolume, TrainingDataError, training_structures
    from ..evaluation.datasets import open_dataset

    dataset = open_dataset(args.data, args.labels)
    if not dataset.structures:
        raise TrainingDataError(f"{args.data} names no label: add labels.json ({{\"1\": \"liver\"}}) or give "
                                "--labels 1=liver.")
    if len(dataset.cases) < 2:
        raise TrainingDataError(f"{args.data} holds {len(dataset.cases)} labelled case: fine-tuning keeps whole "
                                "cases aside to check the result, so add at least one more case.")
    structures = training_structures([(s.value, s.name) for s in dataset.structures])
    training_ids, held_out_ids = _split([c.case_id for c in dataset.cases], args.holdout, args.seed)
    loaded = {}
    for source in dataset.cases:
        case = source.load()
        loaded[case.case_id] = LabelledVolume(case.case_id, case.volume, case.labels)
    present = {s.value for s in structures if any((loaded[c].labels == s.value).any() for c in training_ids)}
    if not present:
        raise TrainingDataError(f"The training cases of {args.data} hold no labelled voxel: check that the label "
                                "files hold the values the label names give.")
    for structure in structures:
        if structure.value not in present:
            raise TrainingDataError(f"Label {structure.value} '{structure.name}' maps to no voxel of the training "
                                    f"cases ({', '.join(training_ids)}): remove it from the label names or add "
                                    "cases that hold it.")
    return dataset, [loaded[c] for c in training_ids], [loaded[c] for c in held_out_ids], structures


def _licence(base_name: str, base_path: Path) -> str:
    from ...model.model_sources import catalogue_entry

    entry = catalogue_entry(base_name)
    if entry is not None:
        return f"inherited from {base_name}: {entry.licence}" + (f" ({entry.licence_url})" if entry.licence_url
                                                                 else "")
    return f"inherited from the base model ({base_path}): read its licence before any use"


class _StopOnInterrupt:
    """Ctrl+C asks the loop to stop after the current step's checkpoint instead of killing it mid-write."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        import threading

        self._previous = None
        if threading.current_thread() is threading.main_thread():  # only the main thread may set a handler
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_):
        if self.requested:  # a second Ctrl+C stops at once
            signal.signal(signal.SIGINT, self._previous)
            raise KeyboardInterrupt
        self.requested = True
        print("\nmedsam3 finetune: stopping after this step's checkpoint (Ctrl+C again to stop at once)")

    def __exit__(self, *_):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_finetune(args: argparse.Namespace) -> int:
    from ...model.model_sources import DEFAULT_MODEL_SOURCE, resolve_model
    from ...model.sam3.transformers_model import location_of, read_image_size
    from ...transports.model_loading import choose_device
    from ...training.loop import Trainer, TrainingSettings
    from ...training.slices import build_slice_set
    from .results import evaluate_before_and_after, finish

    output = Path(args.output).expanduser()
    state = output.with_name(output.name + ".training")
    _check_arguments(args, output, state)
    dataset, training, held_out, structures = _load_data(args)
    base = resolve_model(args.base or DEFAULT_MODEL_SOURCE)
    image_size = int(base.image_size or read_image_size(base.path))
    device = choose_device(args.device)
    settings = TrainingSettings(steps=args.steps, parts=args.train, learning_rate=args.learning_rate,
                                accumulate=args.accumulate, checkpoint_every=args.checkpoint_every, seed=args.seed)
    training_slices = build_slice_set(training, structures, image_size)
    held_out_slices = build_slice_set(held_out, structures, image_size) if held_out else None
    trainer = Trainer(location_of(base.path, "sam3"), training_slices, settings, device, state_dir=state,
                      image_size=image_size)
    for structure in structures:
        if structure.note:
            print(f"{structure.name}: not a trained class name of the base model; it is learnt as typed.")
    before = trainer.held_out_dice(held_out_slices) if held_out_slices else {}  # the base model's
    if args.resume:
        trainer.load_checkpoint()
    if trainer.device.type == "cpu" and trainer.parameter_count > FULL_SIZE_PARAMETERS and not args.force \
            and trainer.step < settings.steps:
        _refuse_on_cpu(trainer)
    _train(trainer, args.quiet)
    trainer.trained_detector()
    after = trainer.held_out_dice(held_out_slices) if held_out_slices else {}
    record = finish(trainer, base, dataset, training, held_out, structures, output, image_size,
                    _licence(base.name, base.path), before, after)
    if held_out:
        evaluate_before_and_after(dataset, [c.case_id for c in held_out], args.base or DEFAULT_MODEL_SOURCE,
                                  output, device, record,
                                  quiet=args.quiet)
    shutil.rmtree(state, ignore_errors=True)
    return 0


def _refuse_on_cpu(trainer) -> None:
    import time

    started = time.perf_counter()
    trainer.train_step()
    seconds = time.perf_counter() - started
    hours = seconds * trainer.settings.steps / 3600
    raise MedSam3Error(f"One training step of this full-size model took {seconds:.0f} s on the CPU "
                       f"({trainer.settings.steps} steps: about {hours:.1f} h): fine-tune on a GPU (--device cuda), "
                       "or add --force to train here anyway (nothing was written).")


def _train(trainer, quiet: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(total=trainer.settings.steps, initial=trainer.step, unit="step", desc="finetune", disable=quiet,
               dynamic_ncols=True)

    def on_step(current) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{current.losses[-1]:.3f}")

    try:
        with _StopOnInterrupt() as interrupt:
            trainer.run(on_step, should_stop=lambda: interrupt.requested)
    finally:
        bar.close()
