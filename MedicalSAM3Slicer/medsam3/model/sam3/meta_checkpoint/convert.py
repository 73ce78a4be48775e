"""``medsam3 models convert``: a Meta checkpoint -> a transformers model directory (weights, config, processor)."""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PretrainedConfig, ProcessorMixin

from ....errors import CheckpointError
from .config import TARGET_MODEL_CLASSES, Target, full_size_config
from .checkpoint_file import _read_checkpoint, normalize_meta_keys
from .mapping import map_meta_state_dict


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion wrote and which checkpoint entries it did not use."""

    output_dir: Path
    target: str
    converted_parameters: int
    unmapped_keys: tuple[str, ...]
    unused_by_target: tuple[str, ...]
    without_counterpart: dict[str, str]
    training_state_entries: tuple[str, ...]
    """Top-level checkpoint entries beside the weights (optimizer state, epoch...), not converted."""


def _examples(names, limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _write_model_directory(
    out_dir: Path, state_dict: dict[str, torch.Tensor], config: PretrainedConfig, processor: ProcessorMixin | None
) -> None:
    """Write the directory next to ``out_dir`` and move it into place only once complete."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        save_file(state_dict, staging / "model.safetensors", metadata={"format": "pt"})
        config.save_pretrained(staging)
        if processor is not None:
            processor.save_pretrained(staging)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked before converting
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def convert_meta_checkpoint(
    pt_path: Path,
    out_dir: Path,
    *,
    target: Target | None = None,
    dtype: torch.dtype = torch.float32,
    processor: ProcessorMixin | None = None,
    config: PretrainedConfig | None = None,
    allow_unmapped: bool = False,
) -> ConversionReport:
    """Convert a Meta-format SAM 3 ``.pt`` into a transformers directory (``config.json``, ``model.safetensors``
    and, given a ``processor``, its files) that ``TARGET_MODEL_CLASSES[target].from_pretrained(out_dir)`` loads
    offline.

    ``target`` defaults to "sam3_video" when the checkpoint has a tracker and "sam3" otherwise; a "sam3_video"
    directory also loads as any of the other three classes. ``config`` defaults to the full-size SAM 3
    configuration of the target (:func:`full_size_config`); floating-point weights are stored in ``dtype``. Raises ``CheckpointError`` when
    a model parameter gets no value or a wrong shape, and when the checkpoint holds weights no rule knows, unless
    ``allow_unmapped`` (they are then listed in the report). ``out_dir`` must not exist yet or be empty; it
    appears only once complete.
    """
    if target is not None and target not in TARGET_MODEL_CLASSES:
        raise ValueError(f"unknown target {target!r}; expected one of {sorted(TARGET_MODEL_CLASSES)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; choose a new directory for the converted model")
    weights, training_state = _read_checkpoint(Path(pt_path))
    meta_state_dict = normalize_meta_keys(weights)
    if target is None:
        target = "sam3_video" if any(name.startswith("tracker.") for name in meta_state_dict) else "sam3"
    config = copy.deepcopy(config) if config is not None else full_size_config(target)
    model_class = TARGET_MODEL_CLASSES[target]
    with torch.device("meta"):
        skeleton = model_class(config)
    mapping = map_meta_state_dict(meta_state_dict, skeleton)

    if mapping.missing_parameters:
        raise CheckpointError(
            f"{pt_path} has no values for {len(mapping.missing_parameters)} parameters of {model_class.__name__} "
            f"({_examples(mapping.missing_parameters)}): it holds another part of SAM 3 (a 2D checkpoint has no "
            "video tracker) or a different architecture."
        )
    if mapping.shape_mismatches:
        mismatches = [f"{name} {got} vs {want}" for name, (got, want) in mapping.shape_mismatches.items()]
        raise CheckpointError(
            f"{pt_path} does not fit the {model_class.__name__} configuration: {_examples(mismatches, 4)}."
        )
    if mapping.unmapped_keys and not allow_unmapped:
        raise CheckpointError(
            f"{pt_path} holds {len(mapping.unmapped_keys)} weights that no SAM 3 name maps to "
            f"({_examples(mapping.unmapped_keys)}); it may be another model or a fine-tune with extra modules "
            "(e.g. LoRA adapters). Convert with allow_unmapped=True to drop them knowingly."
        )

    converted = {
        name: tensor.to(dtype=dtype if tensor.is_floating_point() else tensor.dtype, copy=True).contiguous()
        for name, tensor in mapping.state_dict.items()
    }
    config.architectures = [model_class.__name__]
    config.dtype = dtype
    _write_model_directory(out_dir, converted, config, processor)
    return ConversionReport(
        output_dir=out_dir,
        target=target,
        converted_parameters=len(converted),
        unmapped_keys=mapping.unmapped_keys,
        unused_by_target=mapping.unused_by_target,
        without_counterpart=mapping.without_counterpart,
        training_state_entries=training_state,
    )
