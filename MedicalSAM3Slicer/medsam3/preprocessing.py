"""Intensity preprocessing: CT windows and robust MRI normalisation, mapping voxels to 0..1.

The source array is never modified: every function returns a new array. A :class:`Preprocessing` is chosen
once per volume (the percentiles of an MRI are taken over the whole volume so that neighbouring slices look
alike during propagation) and its ``key`` is part of the embedding cache key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import VolumeError
from .volume import Volume

# name: (level, width) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "abdomen": (50.0, 350.0),
    "liver": (60.0, 160.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}

# Words in a typed target that choose a window automatically; the first match wins.
_WINDOW_KEYWORDS: list[tuple[str, str]] = [
    ("lung", r"lung|lobe|pulmonary nodule|airway|trachea|bronch|emphysema|pneumo"),
    ("bone", r"bone|vertebra|spine|rib|skull|femur|pelvi|sacrum|humerus|scapula|clavicle|sternum|hip|fracture"),
    ("brain", r"brain|hemorrhage|haemorrhage|ventricle of brain|cerebr|intracranial"),
    ("liver", r"liver|hepat"),
    ("abdomen", r"spleen|kidney|renal|pancrea|stomach|bowel|colon|gallbladder|adrenal|bladder|abdom|duoden|"
                r"aorta|vena cava|portal|esophag|prostate|uterus|lymph"),
]

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
    """A linear map of intensities ``low..high`` onto ``0..1``, clipped."""

    low: float
    high: float
    description: str

    @property
    def key(self) -> str:
        return f"{self.description}[{self.low:.6g},{self.high:.6g}]"

    def apply(self, values: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(values, dtype=np.float32) - np.float32(self.low)) / np.float32(self.high - self.low)
        return np.clip(scaled, 0.0, 1.0)

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
        """Robust normalisation from the volume's own intensity distribution (nonzero voxels when the
        background is zero, as in skull-stripped or z-scored MRI)."""
        values = volume.array.reshape(-1)
        step = max(1, values.size // 2_000_000)  # a regular subsample keeps this fast on large volumes
        sample = values[::step].astype(np.float32)
        sample = sample[np.isfinite(sample)]
        nonzero = sample[sample != 0]
        if nonzero.size > 0.05 * sample.size:
            sample = nonzero
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
