"""Convert Meta-format SAM 3 checkpoints (as published by Medical SAM3) to transformers model directories.

Three naming schemes meet here:

* **Meta's own names**, as in Meta's ``sam3.pt`` and the Medical SAM3 ``.pt`` files. A video checkpoint holds
  ``detector.*`` (the image model: ``detector.backbone.vision_backbone.trunk.blocks.0.attn.qkv.weight``...)
  and ``tracker.*`` (the SAM 2-style tracker: ``tracker.sam_mask_decoder...``); an image checkpoint holds the
  detector part without the ``detector.`` prefix, and its tracker (if any) under
  ``inst_interactive_predictor.model.``. :func:`normalize_meta_keys` brings all of them to one **normalized
  Meta namespace**: detector names bare, tracker names under ``tracker.``.
* **transformers' full namespace**, the parameter names of ``Sam3VideoModel`` (``detector_model.*``,
  ``tracker_model.*``, ``tracker_neck.*``). The rule table below maps normalized Meta names to it and back,
  with the tensor changes the two implementations need (fused q/k/v split, class-token position dropped,
  CLIP projection transposed, point embeddings stacked, one positional matrix used twice).
* **A target class's names**: ``Sam3Model`` is ``detector_model.*``; ``Sam3TrackerModel`` and
  ``Sam3TrackerVideoModel`` take the detector's ViT backbone, ``tracker_neck`` as their neck and
  ``tracker_model.*`` (the same selection transformers itself applies when loading ``facebook/sam3``).
"""

from __future__ import annotations

import copy
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from safetensors.torch import save_file
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
    Sam3Config,
    Sam3TrackerConfig,
    Sam3TrackerVideoConfig,
    Sam3VideoConfig,
)

from medsam3.errors import CheckpointError, ModelNotFoundError
from medsam3.model.model_classes import MODEL_CLASSES

Target = Literal["sam3", "sam3_tracker", "sam3_tracker_video", "sam3_video"]

TARGET_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = MODEL_CLASSES  # conversion targets: any of the four

FULL_SIZE_CONFIG_CLASSES: dict[str, type[PretrainedConfig]] = {
    "sam3": Sam3Config,
    "sam3_tracker": Sam3TrackerConfig,
    "sam3_tracker_video": Sam3TrackerVideoConfig,
    "sam3_video": Sam3VideoConfig,
}

# Meta's ViT builds its LayerNorms with eps 1e-5 (sam3/model/vitdet.py, norm_layer "LayerNorm"); transformers'
# Sam3ViTConfig defaults to 1e-6, which moves the trunk output by up to 0.06 on low-variance tokens. Every other
# value of the full-size configurations matches Meta's builder (sam3/model_builder.py; the other LayerNorms are
# built with fixed epsilons equal to Meta's, which tests/engine/model/test_meta_checkpoint.py checks module by module).
META_VIT_LAYER_NORM_EPS = 1e-5


def full_size_config(target: str) -> PretrainedConfig:
    """The configuration of Meta's full-size SAM 3 for one target class, as the converter writes it."""
    config = FULL_SIZE_CONFIG_CLASSES[target]()
    pending = [config]
    while pending:
        current = pending.pop()
        if getattr(current, "model_type", None) == "sam3_vit_model":
            current.layer_norm_eps = META_VIT_LAYER_NORM_EPS
        pending += [value for value in vars(current).values() if isinstance(value, PretrainedConfig)]
    return config


# --------------------------------------------------------------------------------------------------------------
# Reading Meta checkpoints
# --------------------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------------------
# Rule table: normalized Meta names <-> transformers' full (Sam3VideoModel) names
# --------------------------------------------------------------------------------------------------------------

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


def _detector_rules() -> list[_Rule]:
    d = "detector_model."
    trunk, vit = "backbone.vision_backbone.trunk.", d + "vision_encoder.backbone."
    text, clip = "backbone.language_backbone.encoder.", d + "text_encoder."
    geometry = "geometry_encoder."
    rules = [
        _Rule(trunk + "pos_embed", (vit + "embeddings.position_embeddings",), "drop_cls_token"),
        *_rules(
            trunk,
            vit,
            [
                ("patch_embed.proj.weight", "embeddings.patch_embeddings.projection.weight"),
                ("ln_pre.{p}", "layer_norm.{p}"),
                ("blocks.{i}.norm1.{p}", "layers.{i}.layer_norm1.{p}"),
                ("blocks.{i}.norm2.{p}", "layers.{i}.layer_norm2.{p}"),
                ("blocks.{i}.attn.proj.{p}", "layers.{i}.attention.o_proj.{p}"),
                ("blocks.{i}.mlp.fc1.{p}", "layers.{i}.mlp.fc1.{p}"),
                ("blocks.{i}.mlp.fc2.{p}", "layers.{i}.mlp.fc2.{p}"),
            ],
        ),
        _Rule(trunk + "blocks.{i}.attn.qkv.{p}", (vit + "layers.{i}.attention.{qkv}_proj.{p}",), "split_qkv"),
        *_fpn_neck_rules("backbone.vision_backbone.convs.", d + "vision_encoder.neck.fpn_layers."),
        *_fpn_neck_rules("backbone.vision_backbone.sam2_convs.", "tracker_neck.fpn_layers."),
        *_rules(
            text,
            clip,
            [
                ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
                ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
                ("ln_final.{p}", "text_model.final_layer_norm.{p}"),
                ("transformer.resblocks.{i}.ln_1.{p}", "text_model.encoder.layers.{i}.layer_norm1.{p}"),
                ("transformer.resblocks.{i}.ln_2.{p}", "text_model.encoder.layers.{i}.layer_norm2.{p}"),
                ("transformer.resblocks.{i}.mlp.c_fc.{p}", "text_model.encoder.layers.{i}.mlp.fc1.{p}"),
                ("transformer.resblocks.{i}.mlp.c_proj.{p}", "text_model.encoder.layers.{i}.mlp.fc2.{p}"),
                ("transformer.resblocks.{i}.attn.out_proj.{p}", "text_model.encoder.layers.{i}.self_attn.out_proj.{p}"),
            ],
        ),
        _Rule(
            text + "transformer.resblocks.{i}.attn.in_proj_{p}",
            (clip + "text_model.encoder.layers.{i}.self_attn.{qkv}_proj.{p}",),
            "split_qkv",
        ),
        _Rule(text + "text_projection", (clip + "text_projection.weight",), "transpose"),
        _Rule("backbone.language_backbone.resizer.{p}", (d + "text_projection.{p}",)),
        *_attention_rules(geometry + "encode.{i}.self_attn.", d + geometry + "layers.{i}.self_attn.", fused=True),
        *_attention_rules(
            geometry + "encode.{i}.cross_attn_image.", d + geometry + "layers.{i}.cross_attn.", fused=True
        ),
        *_rules(
            geometry,
            d + geometry,
            [
                ("encode.{i}.linear1.{p}", "layers.{i}.mlp.fc1.{p}"),
                ("encode.{i}.linear2.{p}", "layers.{i}.mlp.fc2.{p}"),
                ("encode.{i}.norm1.{p}", "layers.{i}.layer_norm1.{p}"),
                ("encode.{i}.norm2.{p}", "layers.{i}.layer_norm2.{p}"),
                ("encode.{i}.norm3.{p}", "layers.{i}.layer_norm3.{p}"),
                ("img_pre_norm.{p}", "vision_layer_norm.{p}"),
                ("norm.{p}", "prompt_layer_norm.{p}"),
                ("encode_norm.{p}", "output_layer_norm.{p}"),
                ("boxes_direct_project.{p}", "boxes_direct_project.{p}"),
                ("boxes_pool_project.{p}", "boxes_pool_project.{p}"),
                ("boxes_pos_enc_project.{p}", "boxes_pos_enc_project.{p}"),
                ("cls_embed.weight", "cls_embed.weight"),
                ("final_proj.{p}", "final_proj.{p}"),
                ("label_embed.weight", "label_embed.weight"),
            ],
        ),
    ]
    encoder, detr_encoder = "transformer.encoder.layers.{i}.", d + "detr_encoder.layers.{i}."
    rules += [
        *_attention_rules(encoder + "self_attn.", detr_encoder + "self_attn.", fused=True),
        *_attention_rules(encoder + "cross_attn_image.", detr_encoder + "cross_attn.", fused=True),
        *_rules(
            encoder,
            detr_encoder,
            [
                ("linear1.{p}", "mlp.fc1.{p}"),
                ("linear2.{p}", "mlp.fc2.{p}"),
                ("norm1.{p}", "layer_norm1.{p}"),
                ("norm2.{p}", "layer_norm2.{p}"),
                ("norm3.{p}", "layer_norm3.{p}"),
            ],
        ),
    ]
    decoder, detr_decoder = "transformer.decoder.", d + "detr_decoder."
    layer, detr_layer = decoder + "layers.{i}.", detr_decoder + "layers.{i}."
    rules += [
        *_rules(
            decoder,
            detr_decoder,
            [
                ("query_embed.weight", "query_embed.weight"),
                ("reference_points.weight", "reference_points.weight"),
                ("presence_token.weight", "presence_token.weight"),
                ("presence_token_head.layers.0.{p}", "presence_head.layer1.{p}"),
                ("presence_token_head.layers.1.{p}", "presence_head.layer2.{p}"),
                ("presence_token_head.layers.2.{p}", "presence_head.layer3.{p}"),
                ("presence_token_out_norm.{p}", "presence_layer_norm.{p}"),
                ("norm.{p}", "output_layer_norm.{p}"),
                ("bbox_embed.layers.0.{p}", "box_head.layer1.{p}"),
                ("bbox_embed.layers.1.{p}", "box_head.layer2.{p}"),
                ("bbox_embed.layers.2.{p}", "box_head.layer3.{p}"),
                ("ref_point_head.layers.0.{p}", "ref_point_head.layer1.{p}"),
                ("ref_point_head.layers.1.{p}", "ref_point_head.layer2.{p}"),
                ("boxRPB_embed_x.layers.0.{p}", "box_rpb_embed_x.layer1.{p}"),
                ("boxRPB_embed_x.layers.1.{p}", "box_rpb_embed_x.layer2.{p}"),
                ("boxRPB_embed_y.layers.0.{p}", "box_rpb_embed_y.layer1.{p}"),
                ("boxRPB_embed_y.layers.1.{p}", "box_rpb_embed_y.layer2.{p}"),
            ],
        ),
        *_attention_rules(layer + "self_attn.", detr_layer + "self_attn.", fused=True),
        *_attention_rules(layer + "ca_text.", detr_layer + "text_cross_attn.", fused=True),
        *_attention_rules(layer + "cross_attn.", detr_layer + "vision_cross_attn.", fused=True),
        *_rules(
            layer,
            detr_layer,
            [
                ("linear1.{p}", "mlp.fc1.{p}"),
                ("linear2.{p}", "mlp.fc2.{p}"),
                ("norm1.{p}", "vision_cross_attn_layer_norm.{p}"),
                ("catext_norm.{p}", "text_cross_attn_layer_norm.{p}"),
                ("norm2.{p}", "self_attn_layer_norm.{p}"),
                ("norm3.{p}", "mlp_layer_norm.{p}"),
            ],
        ),
        *_rules(
            "dot_prod_scoring.",
            d + "dot_product_scoring.",
            [
                ("prompt_mlp.layers.0.{p}", "text_mlp.layer1.{p}"),
                ("prompt_mlp.layers.1.{p}", "text_mlp.layer2.{p}"),
                ("prompt_mlp.out_norm.{p}", "text_mlp_out_norm.{p}"),
                ("prompt_proj.{p}", "text_proj.{p}"),
                ("hs_proj.{p}", "query_proj.{p}"),
            ],
        ),
        *_rules(
            "segmentation_head.",
            d + "mask_decoder.",
            [
                ("pixel_decoder.conv_layers.{i}.{p}", "pixel_decoder.conv_layers.{i}.{p}"),
                ("pixel_decoder.norms.{i}.{p}", "pixel_decoder.norms.{i}.{p}"),
                ("mask_predictor.mask_embed.layers.{i}.{p}", "mask_embedder.layers.{i}.{p}"),
                ("instance_seg_head.{p}", "instance_projection.{p}"),
                ("semantic_seg_head.{p}", "semantic_projection.{p}"),
                ("cross_attn_norm.{p}", "prompt_cross_attn_norm.{p}"),
            ],
        ),
        *_attention_rules("segmentation_head.cross_attend_prompt.", d + "mask_decoder.prompt_cross_attn.", fused=True),
    ]
    return rules


def _tracker_rules() -> list[_Rule]:
    t, m = "tracker.", "tracker_model."
    prompt, mask_decoder = t + "sam_prompt_encoder.", t + "sam_mask_decoder."
    two_way, memory = mask_decoder + "transformer.", t + "transformer.encoder."
    rules = [
        _Rule(
            prompt + "pe_layer.positional_encoding_gaussian_matrix",
            (
                m + "prompt_encoder.shared_embedding.positional_embedding",
                m + "shared_image_embedding.positional_embedding",
            ),
            "duplicate",
        ),
        _Rule(prompt + "point_embeddings.{n}.weight", (m + "prompt_encoder.point_embed.weight",), "stack_rows"),
        *_rules(
            prompt,
            m + "prompt_encoder.",
            [
                ("not_a_point_embed.weight", "not_a_point_embed.weight"),
                ("no_mask_embed.weight", "no_mask_embed.weight"),
                ("mask_downscaling.0.{p}", "mask_embed.conv1.{p}"),
                ("mask_downscaling.1.{p}", "mask_embed.layer_norm1.{p}"),
                ("mask_downscaling.3.{p}", "mask_embed.conv2.{p}"),
                ("mask_downscaling.4.{p}", "mask_embed.layer_norm2.{p}"),
                ("mask_downscaling.6.{p}", "mask_embed.conv3.{p}"),
            ],
        ),
        *_rules(
            mask_decoder,
            m + "mask_decoder.",
            [
                ("iou_token.weight", "iou_token.weight"),
                ("mask_tokens.weight", "mask_tokens.weight"),
                ("obj_score_token.weight", "obj_score_token.weight"),
                ("conv_s0.{p}", "conv_s0.{p}"),
                ("conv_s1.{p}", "conv_s1.{p}"),
                ("output_upscaling.0.{p}", "upscale_conv1.{p}"),
                ("output_upscaling.1.{p}", "upscale_layer_norm.{p}"),
                ("output_upscaling.3.{p}", "upscale_conv2.{p}"),
            ],
        ),
        *_three_layer_mlp_rules(
            mask_decoder + "output_hypernetworks_mlps.{i}.", m + "mask_decoder.output_hypernetworks_mlps.{i}."
        ),
        *_three_layer_mlp_rules(mask_decoder + "iou_prediction_head.", m + "mask_decoder.iou_prediction_head."),
        *_three_layer_mlp_rules(mask_decoder + "pred_obj_score_head.", m + "mask_decoder.pred_obj_score_head."),
    ]
    two_way_layer, hf_two_way = two_way + "layers.{i}.", m + "mask_decoder.transformer."
    for attention in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
        rules += _attention_rules(f"{two_way_layer}{attention}.", f"{hf_two_way}layers.{{i}}.{attention}.", fused=False)
    rules += [
        *_attention_rules(
            two_way + "final_attn_token_to_image.", hf_two_way + "final_attn_token_to_image.", fused=False
        ),
        *_rules(
            two_way,
            hf_two_way,
            [
                ("layers.{i}.mlp.lin1.{p}", "layers.{i}.mlp.proj_in.{p}"),
                ("layers.{i}.mlp.lin2.{p}", "layers.{i}.mlp.proj_out.{p}"),
                ("layers.{i}.norm1.{p}", "layers.{i}.layer_norm1.{p}"),
                ("layers.{i}.norm2.{p}", "layers.{i}.layer_norm2.{p}"),
                ("layers.{i}.norm3.{p}", "layers.{i}.layer_norm3.{p}"),
                ("layers.{i}.norm4.{p}", "layers.{i}.layer_norm4.{p}"),
                ("norm_final_attn.{p}", "layer_norm_final_attn.{p}"),
            ],
        ),
        *_attention_rules(memory + "layers.{i}.self_attn.", m + "memory_attention.layers.{i}.self_attn.", fused=False),
        *_attention_rules(
            memory + "layers.{i}.cross_attn_image.", m + "memory_attention.layers.{i}.cross_attn_image.", fused=False
        ),
        *_rules(
            memory,
            m + "memory_attention.",
            [
                ("layers.{i}.linear1.{p}", "layers.{i}.linear1.{p}"),
                ("layers.{i}.linear2.{p}", "layers.{i}.linear2.{p}"),
                ("layers.{i}.norm1.{p}", "layers.{i}.layer_norm1.{p}"),
                ("layers.{i}.norm2.{p}", "layers.{i}.layer_norm2.{p}"),
                ("layers.{i}.norm3.{p}", "layers.{i}.layer_norm3.{p}"),
                ("norm.{p}", "layer_norm.{p}"),
            ],
        ),
    ]
    # Memory mask downsampler: 4 x (conv, layer norm, GELU) then a 1x1 conv, in one Meta Sequential.
    downsampler = []
    for stage in range(4):
        downsampler += [(f"encoder.{3 * stage}.{{p}}", f"layers.{stage}.conv.{{p}}")]
        downsampler += [(f"encoder.{3 * stage + 1}.{{p}}", f"layers.{stage}.layer_norm.{{p}}")]
    downsampler += [("encoder.12.{p}", "final_conv.{p}")]
    rules += [
        *_rules(t + "maskmem_backbone.mask_downsampler.", m + "memory_encoder.mask_downsampler.", downsampler),
        *_rules(
            t + "maskmem_backbone.",
            m + "memory_encoder.",
            [
                ("pix_feat_proj.{p}", "feature_projection.{p}"),
                ("out_proj.{p}", "projection.{p}"),
                ("fuser.layers.{i}.dwconv.{p}", "memory_fuser.layers.{i}.depthwise_conv.{p}"),
                ("fuser.layers.{i}.norm.{p}", "memory_fuser.layers.{i}.layer_norm.{p}"),
                ("fuser.layers.{i}.pwconv1.{p}", "memory_fuser.layers.{i}.pointwise_conv1.{p}"),
                ("fuser.layers.{i}.pwconv2.{p}", "memory_fuser.layers.{i}.pointwise_conv2.{p}"),
                ("fuser.layers.{i}.gamma", "memory_fuser.layers.{i}.scale"),
            ],
        ),
        *_rules(
            t,
            m,
            [
                ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
                ("no_mem_embed", "no_memory_embedding"),
                ("no_mem_pos_enc", "no_memory_positional_encoding"),
                ("no_obj_ptr", "no_object_pointer"),
                ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
                ("obj_ptr_tpos_proj.{p}", "temporal_positional_encoding_projection_layer.{p}"),
                ("mask_downsample.{p}", "mask_downsample.{p}"),
            ],
        ),
        *_three_layer_mlp_rules(t + "obj_ptr_proj.", m + "object_pointer_proj."),
    ]
    return rules


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


# --------------------------------------------------------------------------------------------------------------
# Writing a transformers model directory
# --------------------------------------------------------------------------------------------------------------


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
