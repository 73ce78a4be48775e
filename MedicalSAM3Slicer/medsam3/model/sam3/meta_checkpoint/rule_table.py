"""The rule machinery: a template pair of names and the tensor change between Meta's and transformers' layout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple

import torch


RuleKind = Literal["rename", "split_qkv", "drop_cls_token", "transpose", "stack_rows", "duplicate"]

# Placeholders usable in templates: {i} layer index, {p} weight|bias, {qkv} q|k|v, {n} stacked row.
_PLACEHOLDER_PATTERNS = {"i": r"\d+", "n": r"\d+", "p": r"weight|bias", "qkv": r"q|k|v"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _template_regex(template: str) -> re.Pattern[str]:
    pattern, position = [], 0
    for placeholder in _PLACEHOLDER.finditer(template):
        pattern.append(re.escape(template[position : placeholder.start()]))
        pattern.append(f"(?P<{placeholder[1]}>{_PLACEHOLDER_PATTERNS[placeholder[1]]})")
        position = placeholder.end()
    pattern.append(re.escape(template[position:]))
    return re.compile("".join(pattern))


class _Piece(NamedTuple):
    """One tensor produced for a destination name; pieces with slots are concatenated along dim 0 in slot order."""

    name: str
    slot: int | None
    tensor: torch.Tensor


@dataclass(frozen=True)
class _Rule:
    """How one family of Meta names corresponds to transformers names, and what happens to the tensors."""

    meta: str
    transformers: tuple[str, ...]
    kind: RuleKind = "rename"

    @cached_property
    def _meta_regex(self) -> re.Pattern[str]:
        return _template_regex(self.meta)

    @cached_property
    def _transformers_regexes(self) -> tuple[re.Pattern[str], ...]:
        return tuple(_template_regex(template) for template in self.transformers)

    def to_transformers(self, name: str, tensor: torch.Tensor) -> list[_Piece] | None:
        match = self._meta_regex.fullmatch(name)
        if match is None:
            return None
        groups = match.groupdict()
        target = self.transformers[0]
        if self.kind == "split_qkv":
            return [
                _Piece(target.format(**groups, qkv=letter), None, chunk)
                for letter, chunk in zip("qkv", tensor.chunk(3, dim=0), strict=True)
            ]
        if self.kind == "stack_rows":
            row = int(groups.pop("n"))
            return [_Piece(target.format(**groups), row, tensor)]
        if self.kind == "duplicate":
            return [_Piece(template.format(**groups), None, tensor) for template in self.transformers]
        if self.kind == "drop_cls_token":
            tensor = tensor[:, 1:]
        elif self.kind == "transpose":
            tensor = tensor.T
        return [_Piece(target.format(**groups), None, tensor)]

    def to_meta(self, name: str, tensor: torch.Tensor) -> list[_Piece] | None:
        match = next((m for regex in self._transformers_regexes if (m := regex.fullmatch(name))), None)
        if match is None:
            return None
        groups = match.groupdict()
        if self.kind == "split_qkv":
            slot = "qkv".index(groups.pop("qkv"))
            return [_Piece(self.meta.format(**groups), slot, tensor)]
        if self.kind == "stack_rows":
            return [
                _Piece(self.meta.format(**groups, n=row), None, tensor[row : row + 1]) for row in range(len(tensor))
            ]
        if self.kind == "drop_cls_token":  # Meta keeps a class-token position that SAM 3 never uses
            cls_position = torch.zeros_like(tensor[:, :1])
            tensor = torch.cat([cls_position, tensor], dim=1)
        elif self.kind == "transpose":
            tensor = tensor.T
        return [_Piece(self.meta.format(**groups), None, tensor)]


def _rules(meta_prefix: str, transformers_prefix: str, pairs: list[tuple[str, str]]) -> list[_Rule]:
    """Renaming rules for ``(meta suffix, transformers suffix)`` pairs under a common prefix on each side."""
    return [_Rule(meta_prefix + meta, (transformers_prefix + suffix,)) for meta, suffix in pairs]


def _attention_rules(meta_prefix: str, transformers_prefix: str, fused: bool) -> list[_Rule]:
    """One attention block: Meta's fused ``in_proj`` (or separate q/k/v) and ``out_proj`` -> q/k/v/o projections."""
    if fused:
        qkv = _Rule(meta_prefix + "in_proj_{p}", (transformers_prefix + "{qkv}_proj.{p}",), "split_qkv")
    else:
        qkv = _Rule(meta_prefix + "{qkv}_proj.{p}", (transformers_prefix + "{qkv}_proj.{p}",))
    return [qkv, _Rule(meta_prefix + "out_proj.{p}", (transformers_prefix + "o_proj.{p}",))]


def _three_layer_mlp_rules(meta_prefix: str, transformers_prefix: str) -> list[_Rule]:
    """Meta's ``layers.0/1/2`` -> transformers' ``proj_in`` / ``layers.0`` / ``proj_out``."""
    return _rules(
        meta_prefix,
        transformers_prefix,
        [("layers.0.{p}", "proj_in.{p}"), ("layers.1.{p}", "layers.0.{p}"), ("layers.2.{p}", "proj_out.{p}")],
    )


def _fpn_neck_rules(meta_prefix: str, transformers_prefix: str) -> list[_Rule]:
    """Meta's ``convs.<level>`` -> ``fpn_layers.<level>``, for the scale factors (4, 2, 1, 0.5) of SAM 3."""
    return _rules(
        meta_prefix,
        transformers_prefix,
        [
            ("0.dconv_2x2_0.{p}", "0.scale_layers.0.{p}"),  # x4: two transposed convolutions around a GELU
            ("0.dconv_2x2_1.{p}", "0.scale_layers.2.{p}"),
            ("1.dconv_2x2.{p}", "1.scale_layers.0.{p}"),  # x2; x1 has no resampling, x0.5 a parameter-free pool
            ("{i}.conv_1x1.{p}", "{i}.proj1.{p}"),
            ("{i}.conv_3x3.{p}", "{i}.proj2.{p}"),
        ],
    )
