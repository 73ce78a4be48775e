"""Calling transformers' SAM 3 classes so that they compute what Meta's model computes.

Found by the reference comparison with Meta's ``sam3`` package (``tests/engine/model/test_meta_reference.py``):
a text-only prompt needs the geometry encoder's class token, and a click needs the "no memory" embedding on the
level the mask decoder reads. Each function here closes one such gap without re-implementing the network.
"""

from __future__ import annotations

import torch

from .transformers_patches import add_class_token_to_text_prompts as add_class_token

PADDING_BOX_LABEL = -10  # transformers' label for a box that is only padding (masked out of attention)


def class_token_box_prompt(batch_size: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``Sam3Model`` keyword arguments for a text-only prompt that make it compute what Meta's detector computes.

    Meta's detector always runs its geometry encoder, so the encoder's class token joins the prompt even when no
    box is given; transformers' ``Sam3Model`` skips the encoder without boxes (mask logits then differ by about
    0.3, the presence logit by 0.2). One padding box (label -10, masked out) makes it run with only the class
    token, as Meta's model does."""
    return {"input_boxes": torch.zeros(batch_size, 1, 4, device=device, dtype=dtype),
            "input_boxes_labels": torch.full((batch_size, 1), PADDING_BOX_LABEL, device=device, dtype=torch.long)}


def add_class_token_to_text_prompts(detector: torch.nn.Module) -> None:
    """Make a ``Sam3Model`` (e.g. ``Sam3VideoModel.detector_model``, which calls it with text only) add the
    geometry encoder's class token to every prompt without boxes, as Meta's detector does (see
    :func:`class_token_box_prompt`; the ``class_token_for_text`` patch of :mod:`.transformers_patches`)."""
    add_class_token(detector, with_class_token)


def with_class_token(forward):
    """``forward`` of a ``Sam3Model`` that adds the class-token box prompt when given no boxes."""

    def forward_with_class_token(*args, input_boxes=None, input_boxes_labels=None, **kwargs):
        if input_boxes is None:
            features = kwargs.get("vision_embeds")
            reference = features.fpn_hidden_states[0] if features is not None else kwargs["pixel_values"]
            prompt = class_token_box_prompt(reference.shape[0], reference.device, reference.dtype)
            input_boxes, input_boxes_labels = prompt["input_boxes"], prompt["input_boxes_labels"]
        return forward(*args, input_boxes=input_boxes, input_boxes_labels=input_boxes_labels, **kwargs)

    return forward_with_class_token


def tracker_image_embeddings(tracker: torch.nn.Module, pixel_values: torch.Tensor) -> list[torch.Tensor]:
    """A ``Sam3TrackerModel``'s image embeddings with the "no memory" embedding where its mask decoder reads it.

    ``Sam3TrackerModel.get_image_embeddings`` adds that embedding to the neck's 4th, lowest level, which is then
    dropped, so the decoder's level never gets it. Like ``Sam3TrackerVideoModel`` and Meta's model, this keeps
    the first three levels and adds the embedding to the last of them.

    The levels are returned contiguous (the permute leaves channels-last views): every click copies them
    inside the mask decoder (``repeat_interleave`` per prompt), and copying a strided view took a tenth of a
    1008-px click (measured: 46 -> 41.5 ms on the bfloat16 path, masks bit-identical; docs/benchmark.md)."""
    features = tracker.get_image_features(pixel_values, return_dict=True).fpn_hidden_states
    features = list(features[: len(tracker.backbone_feature_sizes)])
    features[-1] = features[-1] + tracker.no_memory_embedding
    batch_size = pixel_values.shape[0]
    return [feature.permute(1, 2, 0).view(batch_size, -1, *size).contiguous()
            for feature, size in zip(features, tracker.backbone_feature_sizes)]
