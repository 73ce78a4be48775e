"""The bright-region family's plug (:mod:`medsam3.model.families`): a second, minimal model family.

Its model (:class:`medsam3.model.bright_region_model.BrightRegionModel`) has no weights: a click keeps the connected
bright region under it on the slice, propagation follows that region from slice to slice, text on a slice returns
every bright region. What is bright is the family's preprocessing: on CT (or a file without a modality whose air
is at about -1000) the soft-tissue window (level 40, width 400 HU) without grey-level steps, so a voxel is bright
above 40 HU (contrast-enhanced organs and vessels, bone); on MR and anything else the 0.5th..99.5th percentiles,
bright above their middle. The same for every target (the model does not read the text). Its vocabulary is
``vocabulary.json`` here, matched through the one terminology like Medical SAM3's. It serves what its catalogue
entry says (no box exemplars, no text through the volume); the engine refuses the rest in one line before any work.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..family_plug import LoadRequest, ModelFamily
from ..preprocessing import CT_WINDOWS, Preprocessing
from ..prompt_kinds import PROPAGATION, TEXT_ON_SLICE, TRACKER_PROMPTS

VOCABULARY_PATH = Path(__file__).with_name("vocabulary.json")
DEFAULT_IMAGE_SIZE = 256
BRIGHT_CT_WINDOW = CT_WINDOWS["soft_tissue"]  # (level, width) HU: bright = above the level
SERVED = frozenset({TEXT_ON_SLICE, TRACKER_PROMPTS, PROPAGATION})


def _load(request: LoadRequest):
    from ..bright_region_model import BrightRegionModel

    size = request.image_size or (request.entry.image_size if request.entry else DEFAULT_IMAGE_SIZE)
    model = BrightRegionModel(image_size=size, mask_grid=size)
    model.name = request.entry.name if request.entry else Path(request.source).name
    model.capabilities = request.entry.capabilities if request.entry else SERVED
    return model


def in_hounsfield_units(volume) -> bool:
    """CT, or intensities with air at about -1000 (a CT read from a file that does not say its modality)."""
    if volume.modality == "CT":
        return True
    values = volume.array.reshape(-1)
    sample = values[::max(1, values.size // 2_000_000)]
    return volume.array.dtype.kind in "if" and sample.size > 0 and float(np.nanmin(sample)) <= -900


def choose_preprocessing(volume, target_text: str = "") -> Preprocessing:
    if in_hounsfield_units(volume):
        level, width = BRIGHT_CT_WINDOW
        return Preprocessing(level - width / 2, level + width / 2, "bright-ct", grey_levels=0)
    found = Preprocessing.percentiles(volume)
    return Preprocessing(found.low, found.high, f"bright-{found.description}", grey_levels=0)


@lru_cache(maxsize=1)
def _vocabulary(entry=None):
    from ..vocabulary import Vocabulary

    return Vocabulary.load(VOCABULARY_PATH, label="the bright-region stand-in")


def _trial(model) -> str:
    """One click in the middle of a bright square on a dark image: the mask is the square."""
    from ..segmentation_model import ModelPrompt

    size, quarter = model.image_size, model.image_size // 4
    image = np.zeros((size, size), dtype=np.float32)
    image[quarter:size - quarter, quarter:size - quarter] = 1.0
    found = model.segment_with_prompt(image, ModelPrompt(np.array([[size / 2, size / 2]]), np.array([1])))
    inside = int((found.logits > 0).sum())
    return f"a test click in a bright square returned {inside / found.logits.size:.0%} of the grid (the square: 25%)"


FAMILY = ModelFamily(
    name="bright-region",
    description="stand-in without weights: the bright connected region under a prompt, slice by slice",
    prompt_kinds=SERVED,
    load=_load,
    choose_preprocessing=choose_preprocessing,
    preprocessing_key=lambda volume, target_text: in_hounsfield_units(volume),
    vocabulary=lambda entry: _vocabulary(),
    runs_on_device=False,
    packages=("scipy",),
    notes=lambda model, cache_dir: (f"{model.name} is a stand-in without weights: it keeps the bright region under "
                                    "a prompt (above 40 HU on CT), it does not recognise anatomy.",),
    trial=_trial,
)
