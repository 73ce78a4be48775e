"""Reading a Meta checkpoint file (image or video layout) into the normalized Meta namespace."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ....errors import CheckpointError, ModelNotFoundError


_IMAGE_TRACKER_PREFIX = "inst_interactive_predictor.model."


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """The checkpoint's raw weights and the names of the training-state entries beside them."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"Checkpoint file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is corrupt or truncated: it is not a readable PyTorch zip checkpoint (or it was saved in "
            "PyTorch's legacy non-zip format). Download it again and check its size and checksum."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} is not a plain weights checkpoint: it contains Python objects that only arbitrary code "
            "could rebuild, so it is refused. Use a checkpoint that holds only tensors (re-save its state dict "
            "with torch.save(model.state_dict(), ...) in a trusted environment) or download the official file."
        ) from error
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"{path} is corrupt or truncated and cannot be read ({error}). Download it again."
        ) from error

    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a dictionary of weights.")
    if isinstance(checkpoint.get("model"), Mapping):
        weights, training_state = checkpoint["model"], tuple(name for name in checkpoint if name != "model")
    elif checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        weights, training_state = checkpoint, ()
    else:
        raise CheckpointError(
            f"{path} has no weights: expected a 'model' entry or a plain state dict, "
            f"found entries {sorted(checkpoint)[:10]}."
        )
    not_tensors = sorted(name for name, value in weights.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: the 'model' entry holds non-tensor values, e.g. {not_tensors[:5]}.")
    return dict(weights), training_state


def normalize_meta_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Meta's video- or image-model state dict into the normalized namespace: detector names without
    ``detector.``, tracker names under ``tracker.`` (from ``tracker.`` or ``inst_interactive_predictor.model.``)."""
    normalized = {}
    for name, tensor in state_dict.items():
        if name.startswith("detector."):
            name = name.removeprefix("detector.")
        elif name.startswith(_IMAGE_TRACKER_PREFIX):
            name = "tracker." + name.removeprefix(_IMAGE_TRACKER_PREFIX)
        normalized[name] = tensor
    return normalized


def load_meta_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a Meta-format ``.pt`` (``torch.load(weights_only=True, mmap=True)`` only) and return its weights
    under normalized Meta names, without the ``model`` wrapper and the optimizer/training state.

    Raises ``CheckpointError`` for a file that needs arbitrary unpickling and for a corrupt or truncated file.
    """
    weights, _ = _read_checkpoint(path)
    return normalize_meta_keys(weights)
