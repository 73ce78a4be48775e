"""From a model source and a device request to a ready in-process backend."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from .. import __version__
from .backend import BackendInfo, LocalBackend
from ..interaction.embedding_cache import EmbeddingCache
from ..interaction.engine import SegmentationEngine
from ..errors import MedSam3Error
from ..model.capabilities import ALL_KINDS, describe
from ..model.families import LoadRequest, family_of_source
from ..model.model_sources import DEFAULT_MODEL_SOURCE, catalogue_entry
from ..model.segmentation_model import SegmentationModel


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
               bf16_autocast: bool | None = None) -> SegmentationModel:
    """The model of any source, loaded by its family's plug (:mod:`medsam3.model.families`). ``bf16_autocast``
    None: on CUDA and on CPUs with native bfloat16 (about twice as fast there)."""
    source = (source or DEFAULT_MODEL_SOURCE).strip()
    family, entry = family_of_source(source)
    return family.load(LoadRequest(source, entry, choose_device(device) if family.runs_on_device else "cpu",
                                   image_size, cache_dir, progress, bf16_autocast))


def _versions(packages) -> dict[str, str]:
    import importlib

    return {**{name: getattr(importlib.import_module(name), "__version__", "?") for name in packages},
            "numpy": np.__version__}


def load_backend(source: str | None = None, device: str | None = None, image_size: int | None = None,
                 cache_dir: str | Path | None = None, progress: bool = True,
                 cache_bytes: int = 4 * 1024**3, bf16_autocast: bool | None = None) -> LocalBackend:
    """The in-process backend for a model source (catalogue name, Hub id, folder, checkpoint file): its family's
    plug loads the model and gives the engine the family's preprocessing and vocabulary."""
    family, _ = family_of_source((source or DEFAULT_MODEL_SOURCE).strip())
    model = load_model(source, device, image_size, cache_dir, progress, bf16_autocast)
    notes = family.notes(model, cache_dir)
    capabilities = getattr(model, "capabilities", None)
    missing = [kind for kind in ALL_KINDS if capabilities is not None and kind not in capabilities]
    if missing:
        notes += (f"{model.name} serves {describe(capabilities)} only; for {describe(missing)} choose "
                  f"{DEFAULT_MODEL_SOURCE}.",)
    device_text = describe_device(str(model.device)) if family.runs_on_device else "cpu (no weights)"
    precision = getattr(model, "precision", "")
    info = BackendInfo(model=model.name, device=device_text + (f", {precision}" if precision else ""),
                       image_size=model.image_size, engine_version=__version__,
                       versions=_versions(family.packages), notes=notes)
    engine = SegmentationEngine(model, EmbeddingCache(cache_bytes), family.vocabulary(catalogue_entry(model.name)),
                                family)
    return LocalBackend(engine, info)


def uses_training_vocabulary(model_name: str) -> bool:
    """Whether typed names are mapped to the class names the model's family was trained on (its vocabulary): yes
    unless its catalogue entry says otherwise (vanilla SAM 3 was not trained on Medical SAM3's names)."""
    family, entry = family_of_source(model_name)
    return family.vocabulary(entry) is not None


def verify_model(source: str | None = None, device: str | None = None, cache_dir: str | Path | None = None) -> str:
    """Load a model, say which prompt kinds it serves (against what the catalogue declares) and run one of them
    on a blank image (the family's trial): a short report, or a clear error."""
    family, _ = family_of_source((source or DEFAULT_MODEL_SOURCE).strip())
    model = load_model(source, device, cache_dir=cache_dir)
    trial = family.trial(model) if family.trial else "no trial"
    where = f"loaded from {model.root} on {describe_device(str(model.device))}" if family.runs_on_device else \
        f"a {family.name} model"
    capabilities = getattr(model, "capabilities", frozenset(family.prompt_kinds))
    protocol = getattr(model, "text_protocol", None)
    lines = [f"{model.name}: {where}, input {model.image_size} px; {trial}.",
             f"serves: {describe(capabilities)}" + (f"; text through the volume: {protocol.name} protocol."
                                                    if protocol is not None else ".")]
    entry = catalogue_entry(model.name)
    if entry is not None and entry.capabilities != capabilities:
        lines.append(f"warning: the catalogue says {model.name} serves {describe(entry.capabilities)}; its weights "
                     f"serve {describe(capabilities)}.")
    vocabulary = family.vocabulary(entry)
    if vocabulary is not None:
        lines.append(f"typed names: mapped to the {len(vocabulary.names)} class names {vocabulary.label} was trained "
                     f"on ({vocabulary.source}); other names run as typed, with a note.")
    else:
        lines.append("typed names: sent to the model as typed.")
    lines += list(family.verify_notes)
    return "\n".join(lines)
