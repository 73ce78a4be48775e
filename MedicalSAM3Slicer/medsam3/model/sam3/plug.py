"""The SAM 3 family's plug (:mod:`medsam3.model.families`): Medical SAM3 and Meta's SAM 3 through transformers.

Loading resolves any SAM 3 source (catalogue name, Hub id, transformers folder, Meta ``.pt``) with
:func:`medsam3.model.model_sources.resolve_model`; the model sees Medical SAM3's training preprocessing (CT windows
chosen from the typed target, MR percentiles: :mod:`medsam3.model.preprocessing`) and is asked for its training
class names (``model_vocabulary.json`` through :mod:`medsam3.model.vocabulary`) unless its catalogue entry says
``training_vocabulary: false``. Nothing here imports torch until a model is loaded.
"""

from __future__ import annotations

import numpy as np

from ..family_plug import LoadRequest, ModelFamily
from ..preprocessing import choose_preprocessing, window_for_target
from ..prompt_kinds import ALL_KINDS, TRACKER_PROMPTS, UNSUPPORTED_CHECKPOINTS


def _load(request: LoadRequest):
    from ..model_sources import catalogue_entry, resolve_model
    from ..text_protocol import protocol_named
    from .transformers_model import TransformersSegmentationModel

    resolved = resolve_model(request.source, request.cache_dir, request.progress)
    entry = catalogue_entry(resolved.name)
    return TransformersSegmentationModel(resolved.path, resolved.name, request.device,
                                         image_size=request.image_size or resolved.image_size,
                                         bf16_autocast=request.bf16_autocast,
                                         text_protocol=protocol_named(entry.volume_text_protocol if entry else ""))


def _preprocessing_key(volume, target_text: str):
    return (volume.modality, window_for_target(target_text) if volume.modality == "CT" else "")


def _vocabulary(entry):
    """Medical SAM3's training names unless the catalogue entry says the weights were not trained on them."""
    from ..vocabulary import medical_sam3_vocabulary

    return None if entry is not None and not entry.training_vocabulary else medical_sam3_vocabulary()


def _notes(model, cache_dir) -> tuple[str, ...]:
    notes = ()
    if model.device.type == "cpu":  # this machine's whole-volume time (medsam3 bench's figure, else an estimate)
        import torch

        from ..cpu_speed import cpu_warning
        from ..model_sources import cache_directory

        notes += (cpu_warning(cache_directory(cache_dir), model.precision_plan.name, torch.get_num_threads(),
                              model.image_size),)
    if model.name == "tiny-random":
        notes += ("tiny-random is a plumbing check with random weights: its masks mean nothing.",)
    return notes


def _trial(model) -> str:
    """One prompt on a blank image: a click when the weights hold the tracker, else a text prompt."""
    from ..segmentation_model import ModelPrompt

    blank = np.zeros((model.image_size, model.image_size), dtype=np.float32)
    centre = np.array([[model.image_size / 2, model.image_size / 2]])
    if TRACKER_PROMPTS in model.capabilities:
        prediction = model.segment_with_prompt(model.encode_for_prompts(blank),
                                               ModelPrompt(centre, np.array([1], dtype=np.int64)))
        return f"a test click returned a {prediction.logits.shape[0]}-pixel mask grid"
    found = model.segment_with_text(model.encode_for_text(blank), "liver")
    return f"a test text prompt returned {len(found)} candidate masks"


FAMILY = ModelFamily(
    name="sam3",
    description="SAM 3 and Medical SAM3 (transformers SAM3 classes), slice by slice on a square model frame",
    prompt_kinds=frozenset(ALL_KINDS),
    load=_load,
    choose_preprocessing=choose_preprocessing,
    preprocessing_key=_preprocessing_key,
    vocabulary=_vocabulary,
    packages=("torch", "transformers"),
    notes=_notes,
    trial=_trial,
    verify_notes=tuple(UNSUPPORTED_CHECKPOINTS.values()),
)
