"""From a model source and a device request to a ready in-process backend."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from .. import __version__
from .backend import BackendInfo, LocalBackend
from ..interaction.embedding_cache import EmbeddingCache
from ..interaction.engine import DEFAULT_VOCABULARY, SegmentationEngine
from ..errors import MedSam3Error
from ..model.capabilities import ALL_KINDS, TRACKER_PROMPTS, UNSUPPORTED_CHECKPOINTS, describe
from ..model.model_sources import DEFAULT_MODEL_SOURCE, catalogue_entry, resolve_model
from ..model.vocabulary import medical_sam3_vocabulary
from ..model.segmentation_model import ModelPrompt
from ..model.sam3.transformers_model import TransformersSegmentationModel



def cpu_warning(model: TransformersSegmentationModel, cache_dir: str | Path | None = None) -> str:
    """The CPU warning, quoting this machine's whole-volume time (``medsam3 bench``'s cached figure, else an
    estimate from the matrix-multiply speed: see :mod:`medsam3.model.cpu_speed`)."""
    import torch

    from ..model.cpu_speed import cpu_warning as warning
    from ..model.model_sources import cache_directory

    return warning(cache_directory(cache_dir), model.precision_plan.name, torch.get_num_threads(), model.image_size)


def choose_device(requested: str | None = None) -> str:
    """``None`` / ``"auto"``: CUDA when available, else CPU. An explicit device is checked, not silently
    replaced."""
    import torch

    if requested in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise MedSam3Error(f"Device {requested!r} was asked for, but this PyTorch sees no CUDA GPU. Use --device "
                           "cpu, install a CUDA build of PyTorch, or use a remote server.")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise MedSam3Error("Device 'mps' was asked for, but Apple's Metal backend is not available here.")
    if requested not in ("cpu", "mps") and not requested.startswith("cuda"):
        raise MedSam3Error(f"Unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps.")
    return requested


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    if device == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return device


def load_model(source: str | None = None, device: str | None = None, image_size: int | None = None,
               cache_dir: str | Path | None = None, progress: bool = True,
               bf16_autocast: bool | None = None) -> TransformersSegmentationModel:
    """``bf16_autocast`` None: on CUDA and on CPUs with native bfloat16 (about twice as fast there)."""
    from ..model.text_protocol import protocol_named

    resolved = resolve_model(source or DEFAULT_MODEL_SOURCE, cache_dir, progress)
    entry = catalogue_entry(resolved.name)
    return TransformersSegmentationModel(resolved.path, resolved.name, choose_device(device),
                                         image_size=image_size or resolved.image_size, bf16_autocast=bf16_autocast,
                                         text_protocol=protocol_named(entry.volume_text_protocol if entry else ""))


def load_backend(source: str | None = None, device: str | None = None, image_size: int | None = None,
                 cache_dir: str | Path | None = None, progress: bool = True,
                 cache_bytes: int = 4 * 1024**3, bf16_autocast: bool | None = None) -> LocalBackend:
    """The in-process backend for a model source (see :func:`medsam3.model.model_sources.resolve_model`)."""
    import torch
    import transformers

    model = load_model(source, device, image_size, cache_dir, progress, bf16_autocast)
    notes = (cpu_warning(model, cache_dir),) if model.device.type == "cpu" else ()
    if model.name == "tiny-random":
        notes += ("tiny-random is a plumbing check with random weights: its masks mean nothing.",)
    missing = [kind for kind in ALL_KINDS if kind not in model.capabilities]
    if missing:
        notes += (f"{model.name} serves {describe(model.capabilities)} only; for {describe(missing)} choose "
                  f"{DEFAULT_MODEL_SOURCE}.",)
    info = BackendInfo(model=model.name, device=f"{describe_device(str(model.device))}, {model.precision}",
                       image_size=model.image_size,
                       engine_version=__version__,
                       versions={"torch": torch.__version__, "transformers": transformers.__version__,
                                 "numpy": np.__version__},
                       notes=notes)
    vocabulary = DEFAULT_VOCABULARY if uses_training_vocabulary(model.name) else None
    return LocalBackend(SegmentationEngine(model, EmbeddingCache(cache_bytes), vocabulary), info)


def uses_training_vocabulary(model_name: str) -> bool:
    """Whether typed names are mapped to Medical SAM3's training class names for this model (vocabulary.py):
    yes unless its catalogue entry says otherwise (vanilla SAM 3 was not trained on them)."""
    entry = catalogue_entry(model_name)
    return entry is None or entry.training_vocabulary


def verify_model(source: str | None = None, device: str | None = None, cache_dir: str | Path | None = None) -> str:
    """Load a model, say which prompt kinds its weights serve (against what the catalogue declares) and run one
    of them on a blank image: a short report, or a clear error."""
    model = load_model(source, device, cache_dir=cache_dir)
    blank = np.zeros((model.image_size, model.image_size), dtype=np.float32)
    centre = np.array([[model.image_size / 2, model.image_size / 2]])
    if TRACKER_PROMPTS in model.capabilities:
        prediction = model.segment_with_prompt(model.encode_for_prompts(blank),
                                               ModelPrompt(centre, np.array([1], dtype=np.int64)))
        trial = f"a test click returned a {prediction.logits.shape[0]}-pixel mask grid"
    else:
        found = model.segment_with_text(model.encode_for_text(blank), "liver")
        trial = f"a test text prompt returned {len(found)} candidate masks"
    lines = [f"{model.name}: loaded from {model.root} on {describe_device(str(model.device))}, input "
             f"{model.image_size} px; {trial}.",
             f"serves: {describe(model.capabilities)}; text through the volume: {model.text_protocol.name} protocol."]
    entry = catalogue_entry(model.name)
    if entry is not None and entry.capabilities != model.capabilities:
        lines.append(f"warning: the catalogue says {model.name} serves {describe(entry.capabilities)}; its weights "
                     f"serve {describe(model.capabilities)}.")
    if uses_training_vocabulary(model.name):
        lines.append(f"typed names: mapped to the {len(medical_sam3_vocabulary().names)} class names Medical SAM3 "
                     f"was trained on (medsam3/model/sam3/model_vocabulary.json); other names run as typed, with a note.")
    else:
        lines.append("typed names: sent to the model as typed.")
    lines += list(UNSUPPORTED_CHECKPOINTS.values())
    return "\n".join(lines)
