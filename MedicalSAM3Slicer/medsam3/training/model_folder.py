"""The fine-tuned model folder: the base model's folder with the detector's trained tensors replaced.

The base folder is copied as it is (one folder for every class, as facebook/sam3 and converted Medical SAM3
checkpoints are, or one sub-folder per class); in every ``*.safetensors`` file a tensor of the detector (a
``Sam3Model`` parameter, named as such or as ``detector_model.<name>`` in a video model's file) is replaced by its
trained value, and every other tensor (the trackers: clicks and propagation) is written back unchanged; files that
hold no trained tensor (the trackers' own folders) are not rewritten at all. The folder is built beside the output
and renamed into place at the end, so an interrupted write leaves no half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

DETECTOR_PREFIX = "detector_model."
CARD_NAME = "README.md"
RECORD_NAME = "finetune.json"


def _trained_name(key: str, trained: dict[str, torch.Tensor]) -> str | None:
    if key in trained:
        return key
    if key.startswith(DETECTOR_PREFIX) and key[len(DETECTOR_PREFIX):] in trained:
        return key[len(DETECTOR_PREFIX):]
    return None


def _rewrite(path: Path, trained: dict[str, torch.Tensor]) -> int:
    """Replace the trained tensors in one safetensors file; the number replaced (the file is left alone at 0)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        keys = list(handle.keys())
        if not any(_trained_name(key, trained) for key in keys):
            return 0
        tensors = {key: handle.get_tensor(key) for key in keys}
    replaced = 0
    for key, value in tensors.items():
        name = _trained_name(key, trained)
        if name is not None:
            new = trained[name].detach().to("cpu", value.dtype).contiguous()
            if new.shape != value.shape:
                raise ValueError(f"{path.name}: {key} has shape {tuple(value.shape)} in the base model but "
                                 f"{tuple(new.shape)} after training")
            tensors[key] = new
            replaced += 1
    save_file(tensors, str(path), metadata=metadata)
    return replaced


def _set_image_size(folder: Path, image_size: int) -> None:
    """The configs at the size the model was trained at (a catalogue model such as the 3D checkpoint runs at 504 px
    while its converted config says 1008), so that loading the folder by path runs it at that size."""
    from ..model.sam3.transformers_model import read_image_size, resize_config

    if read_image_size(folder) == image_size:
        return
    for path in folder.rglob("config.json"):
        path.write_text(json.dumps(resize_config(json.loads(path.read_text()), image_size), indent=2) + "\n")


def write_model_folder(base: Path, output: Path, trained: dict[str, torch.Tensor], files: dict[str, str],
                       image_size: int | None = None) -> Path:
    """Write ``output`` (which must not exist) from ``base`` with the ``trained`` detector tensors and some text
    ``files`` (model card, record, report); atomic (a staging folder renamed at the end)."""
    output = Path(output)
    staging = output.with_name(f".{output.name}.writing")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        shutil.copytree(base, staging, ignore=shutil.ignore_patterns(*files, ".*"))
        replaced = sum(_rewrite(path, trained) for path in sorted(staging.rglob("*.safetensors")))
        if replaced == 0:
            raise ValueError(f"{base} holds no tensor of the detector: it cannot take the fine-tuned weights")
        if image_size:
            _set_image_size(staging, image_size)
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        os.replace(staging, output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return output


def model_card(record: dict) -> str:
    """The README of a fine-tuned model: what it was trained from, on what, how long, and under which licence."""
    structures = "; ".join(f"{entry['name']}: {entry['prompt']}" for entry in record["structures"])
    lines = [f"# {record['name']}", "",
             f"Fine-tuned with `medsam3 finetune` (medsam3 {record['medsam3_version']}) from **{record['base']}**.",
             "", "| | |", "|---|---|",
             f"| base model | {record['base']} |",
             f"| training data | {record['data']} ({len(record['training_cases'])} cases: "
             f"{', '.join(record['training_cases'])}) |",
             f"| held-out cases | {', '.join(record['held_out_cases']) or 'none'} |",
             f"| structures (label: prompt) | {structures} |",
             f"| steps | {record['steps']} (x {record['accumulate']} samples, seed {record['seed']}) |",
             f"| trained parts | {record['trained_parts']} |",
             f"| tracker (clicks, propagation) | {record['tracker']} |",
             f"| licence | {record['licence']} |", "",
             "Load it by path: `medsam3 segment IMAGE --model THIS_FOLDER --text NAME`, `medsam3 serve --model "
             "THIS_FOLDER`, `medsam3 evaluate DATA --model THIS_FOLDER`, or in Slicer under Settings -> Model "
             "source.", ""]
    if record.get("report"):
        lines += ["The before/after comparison on the held-out cases is in `report.md`.", ""]
    return "\n".join(lines)
