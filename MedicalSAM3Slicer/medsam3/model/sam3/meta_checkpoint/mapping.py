"""A whole state dict mapped between Meta's names and a target class's names, in both directions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel

from ....errors import CheckpointError
from .config import TARGET_MODEL_CLASSES
from .rule_table import _Piece, _Rule
from .detector_names import _detector_rules
from .tracker_names import _tracker_rules


_RULES: tuple[_Rule, ...] = (*_detector_rules(), *_tracker_rules())

# Meta tensors transformers has no place for, with the reason (reported, never an error).
_WITHOUT_COUNTERPART: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"backbone\.vision_backbone\.trunk\.blocks\.\d+\.attn\.freqs_cis"),
        "rotary position table (a buffer derived from the image size); transformers recomputes it",
    ),
    (
        re.compile(r"geometry_encoder\.points_(direct_project|pool_project|pos_enc_project)\.(weight|bias)"),
        "point-prompt projection of the detector's geometry encoder; transformers' Sam3Model takes only box "
        "prompts (point prompts go to the tracker classes)",
    ),
)

# How each target class selects from the full namespace: (full prefix, target prefix), most specific first.
_TARGET_PREFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "sam3": (("detector_model.", ""),),
    "sam3_video": (("", ""),),
    "sam3_tracker": (
        ("detector_model.vision_encoder.backbone.", "vision_encoder.backbone."),
        ("tracker_neck.", "vision_encoder.neck."),
        ("tracker_model.", ""),
    ),
}
_TARGET_PREFIXES["sam3_tracker_video"] = _TARGET_PREFIXES["sam3_tracker"]


def _full_to_target(name: str, target: str) -> str | None:
    for full_prefix, target_prefix in _TARGET_PREFIXES[target]:
        if name.startswith(full_prefix):
            return target_prefix + name.removeprefix(full_prefix)
    return None


def _target_to_full(name: str, target: str) -> str:
    # every target's last prefix is "", so some prefix always matches
    return next(
        full_prefix + name.removeprefix(target_prefix)
        for full_prefix, target_prefix in _TARGET_PREFIXES[target]
        if name.startswith(target_prefix)
    )


def _target_of(model: torch.nn.Module) -> str:
    for target, model_class in TARGET_MODEL_CLASSES.items():
        if type(model) is model_class:
            return target
    raise TypeError(
        f"expected one of {[cls.__name__ for cls in TARGET_MODEL_CLASSES.values()]}, got {type(model).__name__}"
    )


def _assemble(pieces: Mapping[str, list[_Piece]]) -> dict[str, torch.Tensor]:
    """Join the pieces produced for each destination name: concatenate slotted pieces, deduplicate the rest."""
    assembled = {}
    for name, parts in pieces.items():
        slots = sorted(part.slot for part in parts if part.slot is not None)
        if slots:
            if len(slots) != len(parts) or slots != list(range(len(parts))):
                raise CheckpointError(f"{name}: expected consecutive parts 0..{len(parts) - 1}, got slots {slots}")
            assembled[name] = torch.cat([part.tensor for part in sorted(parts, key=lambda part: part.slot)], dim=0)
            continue
        first = parts[0].tensor
        for other in parts[1:]:  # one source tensor used twice; meta tensors carry no values to compare
            if not (first.is_meta or torch.equal(first, other.tensor)):
                raise CheckpointError(f"{name}: the transformers copies of this tensor differ, Meta stores only one")
        assembled[name] = first
    return assembled


@dataclass(frozen=True)
class MetaStateDictMapping:
    """A Meta state dict mapped onto one transformers model, with everything that did not fit."""

    state_dict: dict[str, torch.Tensor]
    """Tensors under the target model's ``state_dict()`` names."""
    unmapped_keys: tuple[str, ...]
    """Meta names no rule knows: unexpected weights, an error unless explicitly allowed."""
    unused_by_target: tuple[str, ...]
    """Meta names of SAM 3 parts the target class does not have (e.g. the tracker for ``Sam3Model``)."""
    without_counterpart: dict[str, str] = field(default_factory=dict)
    """Meta names transformers has no place for at all, with the reason."""
    missing_parameters: tuple[str, ...] = ()
    """Target names nothing in the checkpoint filled."""
    shape_mismatches: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    """Target name -> (checkpoint shape, model shape) where they differ."""


def map_meta_state_dict(meta_state_dict: Mapping[str, torch.Tensor], model: PreTrainedModel) -> MetaStateDictMapping:
    """Map a state dict under normalized Meta names onto the parameters of ``model`` (one of the four SAM 3
    classes; a model on the meta device is enough, only names and shapes are read from it)."""
    target = _target_of(model)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    pieces: dict[str, list[_Piece]] = {}
    unmapped, used, unused, without_counterpart = [], set(), set(), {}
    for meta_name, tensor in meta_state_dict.items():
        reason = next((why for pattern, why in _WITHOUT_COUNTERPART if pattern.fullmatch(meta_name)), None)
        if reason is not None:
            without_counterpart[meta_name] = reason
            continue
        produced = next((out for rule in _RULES if (out := rule.to_transformers(meta_name, tensor)) is not None), None)
        if produced is None:
            unmapped.append(meta_name)
            continue
        for piece in produced:
            target_name = _full_to_target(piece.name, target)
            if target_name is None or target_name not in expected:
                unused.add(meta_name)
                continue
            pieces.setdefault(target_name, []).append(piece._replace(name=target_name))
            used.add(meta_name)
    state_dict = _assemble(pieces)
    return MetaStateDictMapping(
        state_dict=state_dict,
        unmapped_keys=tuple(sorted(unmapped)),
        unused_by_target=tuple(sorted(unused - used)),
        without_counterpart=without_counterpart,
        missing_parameters=tuple(sorted(set(expected) - set(state_dict))),
        shape_mismatches={
            name: (tuple(tensor.shape), expected[name])
            for name, tensor in state_dict.items()
            if tuple(tensor.shape) != expected[name]
        },
    )


def export_meta_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The weights of a transformers SAM 3 model under Meta's own names, in the layout of Meta's video
    checkpoints (``detector.*`` and ``tracker.*``); the inverse of the conversion.

    Meta's derived buffers (``freqs_cis``) and the detector's point projections, which transformers does not
    have, are not produced; the class-token position of ``pos_embed`` is filled with zeros.
    """
    target = _target_of(model)
    pieces: dict[str, list[_Piece]] = {}
    for name, tensor in model.state_dict().items():
        full_name = _target_to_full(name, target)
        produced = next((out for rule in _RULES if (out := rule.to_meta(full_name, tensor)) is not None), None)
        if produced is None:
            raise ValueError(
                f"transformers parameter {full_name!r} has no Meta name (an unknown transformers version?)"
            )
        for piece in produced:
            pieces.setdefault(piece.name, []).append(piece)
    return {
        (name if name.startswith("tracker.") else "detector." + name): tensor
        for name, tensor in _assemble(pieces).items()
    }
