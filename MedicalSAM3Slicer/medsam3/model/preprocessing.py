"""Intensity preprocessing: CT windows and robust MRI normalisation, mapping voxels to 0..1.

The default model input repeats what Medical SAM3 saw in training. Its authors trained on the CVPR 2025
BiomedSegFM volumes, stored as uint8 ``imgs`` in [0, 255] (AIM-Research-Lab/Medical-SAM3
``sam3/train/data/sam3_image_dataset.py`` reads them unchanged when they are uint8; ``medical/INFERENCE_3D.md``
asks for CT windowing before inference). Those volumes were made with the MedSAM preprocessing
(bowang-lab/MedSAM ``pre_CT_MR.py``): CT clipped to a window (level 40, width 400 by default) and MR clipped to
the 0.5th..99.5th percentiles of its positive voxels over the whole volume, each then scaled min-max to 0..255 and
truncated to uint8. The model then sees ``uint8 / 255`` copied to RGB, normalised with mean 0.5 and std 0.5
(the processor; ``medsam3_stage1_train_all_unified.yaml``). So here: the soft-tissue window for CT unless the
target is lung, bone or brain, positive-voxel percentiles for MR, and the same 256 grey levels
(``Preprocessing.grey_levels``); ``tests/engine/model/test_preprocessing_parity.py`` rebuilds the authors' steps and compares.

The source array is never modified: every function returns a new array. A :class:`Preprocessing` is chosen
once per volume (the percentiles of an MRI are taken over the whole volume so that neighbouring slices look
alike during propagation) and its ``key`` is part of the embedding cache key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import VolumeError
from ..geometry.volume import Volume

# name: (level, width) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "abdomen": (50.0, 350.0),
    "liver": (60.0, 160.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}

# Words in a typed target that choose a window automatically; the first match wins. Everything else (every
# abdominal organ, vessel and tumour) gets the soft-tissue window, the one of the training data's preprocessing
# (MedSAM pre_CT_MR.py default); "liver" and "abdomen" stay available by name but are not chosen automatically.
_WINDOW_KEYWORDS: list[tuple[str, str]] = [
    ("lung", r"lung|lobe|pulmonary nodule|airway|trachea|bronch|emphysema|pneumo|covid"),
    ("bone", r"bone|vertebra|spine|rib|skull|femur|pelvi|sacrum|humerus|scapula|clavicle|sternum|hip|fracture"),
    ("brain", r"brain|hemorrhage|haemorrhage|ventricle of brain|cerebr|intracranial"),
]
GREY_LEVELS = 255  # uint8: the training images' intensity steps

DEFAULT_PERCENTILES = (0.5, 99.5)


def window_for_target(text: str) -> str:
    """The CT window a typed target calls for (``soft_tissue`` when nothing specific matches)."""
    lowered = text.lower()
    for window, pattern in _WINDOW_KEYWORDS:
        if re.search(pattern, lowered):
            return window
    return "soft_tissue"


@dataclass(frozen=True)
class Preprocessing:
    """A linear map of intensities ``low..high`` onto ``0..1``, clipped, then cut to ``grey_levels`` steps as
    the training data's uint8 conversion did (``floor(x * 255) / 255``); ``grey_levels=0`` keeps it continuous."""

    low: float
    high: float
    description: str
    grey_levels: int = GREY_LEVELS

    @property
    def key(self) -> str:
        levels = f"/{self.grey_levels}" if self.grey_levels else ""
        return f"{self.description}[{self.low:.6g},{self.high:.6g}]{levels}"

    def apply(self, values: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(values, dtype=np.float32) - np.float32(self.low)) / np.float32(self.high - self.low)
        scaled = np.clip(scaled, 0.0, 1.0)
        if self.grey_levels:
            levels = np.float32(self.grey_levels)
            scaled = np.floor(scaled * levels) / levels
        return scaled

    @classmethod
    def ct_window(cls, name: str) -> "Preprocessing":
        if name not in CT_WINDOWS:
            raise VolumeError(f"Unknown CT window {name!r}; choose one of {', '.join(CT_WINDOWS)}.")
        level, width = CT_WINDOWS[name]
        return cls(level - width / 2, level + width / 2, f"ct-{name}")

    @classmethod
    def custom_window(cls, level: float, width: float) -> "Preprocessing":
        if not width > 0:
            raise VolumeError(f"A window width must be positive (got {width}).")
        return cls(level - width / 2, level + width / 2, "window")

    @classmethod
    def percentiles(cls, volume: Volume, lower: float = DEFAULT_PERCENTILES[0],
                    upper: float = DEFAULT_PERCENTILES[1]) -> "Preprocessing":
        """Robust normalisation from the volume's own intensity distribution: the percentiles of its positive
        voxels, as the training data's MR preprocessing took them (all finite voxels when fewer than 5 % are
        positive)."""
        values = volume.array.reshape(-1)
        step = max(1, values.size // 2_000_000)  # a regular subsample keeps this fast on large volumes
        sample = values[::step].astype(np.float32)
        sample = sample[np.isfinite(sample)]
        positive = sample[sample > 0]
        if positive.size > 0.05 * sample.size:
            sample = positive
        if sample.size == 0:
            raise VolumeError("The volume has no finite voxel values.")
        low, high = np.percentile(sample, [lower, upper])
        if not high > low:
            high = low + 1.0
        return cls(float(low), float(high), f"percentile-{lower:g}-{upper:g}")


def choose_preprocessing(volume: Volume, target_text: str = "", window: str | None = None) -> Preprocessing:
    """The preprocessing for a volume: the named window if given ("auto" or None picks one), CT windows for
    CT chosen from the typed target, robust percentiles for MRI and anything else."""
    if window not in (None, "", "auto"):
        if window == "percentile":
            return Preprocessing.percentiles(volume)
        return Preprocessing.ct_window(window)
    if volume.modality == "CT":
        return Preprocessing.ct_window(window_for_target(target_text))
    return Preprocessing.percentiles(volume)
