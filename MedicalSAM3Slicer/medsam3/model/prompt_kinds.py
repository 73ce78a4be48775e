"""The prompt kinds a model may serve, and the catalogue's names for them (no catalogue, no weights read here:
:mod:`.model_sources` and :mod:`.capabilities` both build on this)."""

from __future__ import annotations

TEXT_ON_SLICE = "text on a slice"
BOX_EXEMPLARS = "box exemplars on a slice"
TRACKER_PROMPTS = "clicks and boxes (tracker)"
PROPAGATION = "propagation through the volume"
TEXT_THROUGH_VOLUME = "text through the volume"
ALL_KINDS = (TEXT_ON_SLICE, BOX_EXEMPLARS, TRACKER_PROMPTS, PROPAGATION, TEXT_THROUGH_VOLUME)

# The catalogue's "serves" keys
CATALOGUE_KEYS = {"text_on_slice": TEXT_ON_SLICE, "box_exemplars": BOX_EXEMPLARS,
                  "tracker_prompts": TRACKER_PROMPTS, "propagation": PROPAGATION,
                  "text_through_volume": TEXT_THROUGH_VOLUME}

UNSUPPORTED_CHECKPOINTS = {
    "checkpoint_3D_LoRA2D.pt": "checkpoint_3D_LoRA2D.pt (Medical SAM3's LoRA adapter) is not supported: its "
                               "format is not published; use medical-sam3-3d.",
}


def from_catalogue(keys) -> frozenset[str]:
    unknown = [key for key in keys if key not in CATALOGUE_KEYS]
    if unknown:
        raise ValueError(f"unknown prompt kinds in the model catalogue: {unknown}")
    return frozenset(CATALOGUE_KEYS[key] for key in keys)
