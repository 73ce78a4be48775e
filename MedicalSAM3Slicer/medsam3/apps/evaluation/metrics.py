"""Dice, normalised surface distance (NSD) and the interactive summaries (NoC, area under the Dice curve).

Empty masks follow the Medical SAM3 authors' evaluation (``medical/evaluation``): Dice is ``2|G∩P| / (|G|+|P|)``;
when ground truth and prediction are both empty there is nothing to score and the pair is left out of every mean
(the authors skip such slices and structures); when exactly one of them is empty Dice is 0. NSD uses the same
rule. NSD follows the CVPR 2025 interactive 3D challenge: the share of both surfaces lying within a tolerance
(mm, default 2) of the other surface, with the voxel spacing taken into account. docs/evaluation.md states it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

DEFAULT_NSD_TOLERANCE_MM = 2.0


def dice(ground_truth: np.ndarray, prediction: np.ndarray) -> float | None:
    """Dice of two boolean masks; None (not scored) when both are empty, 0 when exactly one is."""
    truth = np.asarray(ground_truth, dtype=bool)
    predicted = np.asarray(prediction, dtype=bool)
    total = int(truth.sum()) + int(predicted.sum())
    if total == 0:
        return None
    return 2.0 * int(np.logical_and(truth, predicted).sum()) / total


def _joint_crop(first: np.ndarray, second: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of both masks, one voxel wider where the volume allows."""
    either = first | second
    crop = []
    for axis in range(either.ndim):
        hits = np.flatnonzero(either.any(axis=tuple(a for a in range(either.ndim) if a != axis)))
        crop.append(slice(max(0, hits[0] - 1), min(either.shape[axis], hits[-1] + 2)))
    return tuple(crop)


def surface(mask: np.ndarray) -> np.ndarray:
    """The mask's voxels with a face neighbour outside it (voxels on the volume's edge count as surface)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def normalised_surface_distance(ground_truth: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                                tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> float | None:
    """NSD of two masks on a grid of ``spacing`` (mm per array axis); None when both are empty, 0 when one is."""
    truth = np.asarray(ground_truth, dtype=bool)
    predicted = np.asarray(prediction, dtype=bool)
    has_truth, has_prediction = truth.any(), predicted.any()
    if not has_truth and not has_prediction:
        return None
    if not (has_truth and has_prediction):
        return 0.0
    crop = _joint_crop(truth, predicted)
    truth_surface, predicted_surface = surface(truth[crop]), surface(predicted[crop])
    sampling = tuple(float(s) for s in spacing)
    to_prediction = ndimage.distance_transform_edt(~predicted_surface, sampling=sampling)
    to_truth = ndimage.distance_transform_edt(~truth_surface, sampling=sampling)
    close = int((to_prediction[truth_surface] <= tolerance_mm).sum()) + \
        int((to_truth[predicted_surface] <= tolerance_mm).sum())
    return close / (int(truth_surface.sum()) + int(predicted_surface.sum()))


def clicks_to_reach(dice_per_click: Sequence[float | None], target: float, max_clicks: int) -> int:
    """Number of clicks (NoC) until Dice first reaches ``target``; ``max_clicks`` when it never does (the
    convention of interactive segmentation benchmarks: a failure costs the whole budget)."""
    for click, value in enumerate(dice_per_click, start=1):
        if value is not None and value >= target:
            return click
    return max_clicks


def area_under_curve(dice_per_click: Sequence[float | None]) -> float | None:
    """Trapezoidal area under Dice against click number (unit steps), as the CVPR 2025 challenge computes it:
    0 for a single click, at most ``clicks - 1``. Unscored clicks count as 0."""
    values = [0.0 if v is None else float(v) for v in dice_per_click]
    if not values:
        return None
    return float(np.trapezoid(values)) if len(values) > 1 else 0.0
