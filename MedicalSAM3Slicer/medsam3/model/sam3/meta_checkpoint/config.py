"""The full-size configurations of Meta's SAM 3, one per transformers target class."""

from __future__ import annotations

from typing import Literal

from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    Sam3Config,
    Sam3TrackerConfig,
    Sam3TrackerVideoConfig,
    Sam3VideoConfig,
)

from ..model_classes import MODEL_CLASSES


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
# built with fixed epsilons equal to Meta's, which tests/engine/model/test_meta_checkpoint.py checks module by
# module).
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
