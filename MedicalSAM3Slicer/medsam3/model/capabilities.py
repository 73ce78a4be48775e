"""Which prompt kinds a checkpoint serves, as declared in the catalogue and as found in its weights.

Medical SAM3's ``checkpoint_2D.pt`` is an image-model checkpoint: detector only (text, and box exemplars, on one
slice). ``checkpoint_3D_checkpoint8.pt`` holds the detector and the tracker (Meta's ``detector.`` / ``tracker.``
layout, all 860M parameters fine-tuned; AIM-Research-Lab/Medical-SAM3 ``sam3/model_builder.py``
``build_sam3_video_model``), so it serves every kind. The catalogue says what each entry should serve; when a
model is loaded, :func:`capabilities_from_weights` reads the parameter names it really holds (safetensors headers
only, no tensor is read), and the engine refuses a prompt kind the weights cannot serve before anything heavy
runs, with one line naming the model to choose.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import MedSam3Error
from .prompt_kinds import (ALL_KINDS, BOX_EXEMPLARS, CATALOGUE_KEYS, PROPAGATION, TEXT_ON_SLICE,  # noqa: F401
                           TEXT_THROUGH_VOLUME, TRACKER_PROMPTS, UNSUPPORTED_CHECKPOINTS, from_catalogue)

# Parameter-name parts that show a part of SAM 3 is present, in any of the namespaces the four transformers
# classes save (bare, ``detector_model.``, ``tracker_model.``)
_DETECTOR = re.compile(r"(^|\.)detr_decoder\.")
_TRACKER = re.compile(r"(^|\.)prompt_encoder\.")
_MEMORY = re.compile(r"(^|\.)memory_attention\.")


class CapabilityError(MedSam3Error, ValueError):
    """The loaded checkpoint cannot serve the prompt kind asked for."""


def parameter_names(directory: Path) -> list[str] | None:
    """The parameter names saved in a transformers directory (from the safetensors headers), or None when the
    weights are in a format whose names cannot be listed cheaply."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.exists():
        return list(json.loads(index.read_text()).get("weight_map", {}))
    single = directory / "model.safetensors"
    if single.exists():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as weights:
            return list(weights.keys())
    return None


def capabilities_from_weights(root: Path, location_of) -> frozenset[str]:
    """The prompt kinds the weights under ``root`` can serve (``location_of(root, role)`` is where each class's
    weights live). A location whose names cannot be listed is trusted (its loader checks it)."""
    names: dict[Path, list[str] | None] = {}

    def holds(role: str, *patterns: re.Pattern) -> bool:
        location = Path(location_of(root, role))
        if location not in names:
            names[location] = parameter_names(location)
        found = names[location]
        return found is None or all(any(p.search(name) for name in found) for p in patterns)

    kinds = set()
    if holds("sam3", _DETECTOR):
        kinds |= {TEXT_ON_SLICE, BOX_EXEMPLARS}
    if holds("sam3_tracker", _TRACKER):
        kinds.add(TRACKER_PROMPTS)
    if holds("sam3_tracker_video", _TRACKER, _MEMORY):
        kinds.add(PROPAGATION)
    if holds("sam3_video", _DETECTOR, _TRACKER, _MEMORY):
        kinds.add(TEXT_THROUGH_VOLUME)
    return frozenset(kinds)


def describe(kinds) -> str:
    return ", ".join(kind for kind in ALL_KINDS if kind in kinds) or "nothing"


def model_serving(kind: str) -> str:
    """The catalogue model to choose for a prompt kind (the default when it serves it)."""
    from .model_sources import DEFAULT_MODEL_SOURCE, catalogue_entry, list_models

    default = catalogue_entry(DEFAULT_MODEL_SOURCE)
    if default is not None and kind in default.capabilities:
        return default.name
    return next((e.name for e in list_models() if kind in e.capabilities and e.format != "tiny-random"),
                DEFAULT_MODEL_SOURCE)


def require(kinds, kind: str, model_name: str) -> None:
    """Raise :class:`CapabilityError` (one line, naming the model to choose) unless ``kind`` is served."""
    if kinds is None or kind in kinds:
        return
    choice = model_serving(kind)
    raise CapabilityError(f"{model_name} cannot do {kind}: it serves {describe(kinds)} only. Choose the model "
                          f"{choice} (command line: --model {choice}; Slicer: the Model setting).")


def kinds_for_request(text: bool, clicks: bool, whole_volume: bool) -> list[str]:
    """The prompt kinds a command-line request needs."""
    kinds = []
    if text:
        kinds.append(TEXT_THROUGH_VOLUME if whole_volume else TEXT_ON_SLICE)
    if clicks:
        kinds += [TRACKER_PROMPTS, PROPAGATION] if whole_volume else [TRACKER_PROMPTS]
    return kinds


def require_from_catalogue(source: str | None, kinds) -> None:
    """Refuse a request a catalogue model does not serve before it is downloaded or loaded (other sources are
    checked against their weights once loaded)."""
    from .model_sources import DEFAULT_MODEL_SOURCE, catalogue_entry

    entry = catalogue_entry(source or DEFAULT_MODEL_SOURCE)
    if entry is not None:
        for kind in kinds:
            require(entry.capabilities, kind, entry.name)
