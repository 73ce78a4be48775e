"""Dice, normalised surface distance (NSD) and the interactive summaries (NoC, area under the Dice curve).

Empty masks follow the Medical SAM3 authors' evaluation (``medical/evaluation``): Dice is ``2|G∩P| / (|G|+|P|)``;
when ground truth and prediction are both empty there is nothing to score and the pair is left out of every mean
(the authors skip such slices and structures); when exactly one of them is empty Dice is 0. NSD uses the same
rule. NSD (surface Dice) is the area-weighted share of both surfaces lying within a tolerance (mm, default 2) of the
other surface, in physical spacing: MONAI's ``compute_surface_dice(..., use_subvoxels=True)``, which equals the
challenge's ``SurfaceDice.py`` (DeepMind's surface-distance). docs/evaluation.md states it.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ...errors import missing_extra

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
    """The bounding box of both masks. MONAI crops to it again, one voxel wider, padding with background where the
    array ends; outside it both masks are background, so the crop changes neither surface: it only saves memory."""
    from scipy import ndimage

    return ndimage.find_objects((first | second).view(np.uint8))[0]


def normalised_surface_distance(ground_truth: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                                tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> float | None:
    """NSD of two masks on a grid of ``spacing`` (mm per array axis); None when both are empty, 0 when one is.

    Computed by MONAI's ``compute_surface_dice`` with ``use_subvoxels=True``: each surface element is weighted by
    its area in mm², as DeepMind's surface-distance code (the CVPR 2025 challenge's ``SurfaceDice.py``) does.
    The masks are cropped to their joint bounding box first, which changes neither surface."""
    truth = np.asarray(ground_truth, dtype=bool)
    predicted = np.asarray(prediction, dtype=bool)
    has_truth, has_prediction = truth.any(), predicted.any()
    if not has_truth and not has_prediction:
        return None
    if not (has_truth and has_prediction):
        return 0.0
    try:
        import torch
        from monai.metrics import compute_surface_dice
    except ImportError as error:
        raise missing_extra(error, "The NSD") or error

    crop = _joint_crop(truth, predicted)
    with warnings.catch_warnings():  # MONAI 1.6 warns about an argument it passes to itself
        warnings.simplefilter("ignore", FutureWarning)
        # one channel, the mask (no background channel: MONAI leaves a single channel as it is)
        value = compute_surface_dice(torch.from_numpy(predicted[crop][None, None]),
                                     torch.from_numpy(truth[crop][None, None]), [float(tolerance_mm)],
                                     spacing=[float(s) for s in spacing], use_subvoxels=True)
    return float(value)


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
    return float(np.trapezoid(values))  # 0.0 for one value


def instance_f1(ground_truth: np.ndarray, prediction: np.ndarray, threshold: float = 0.5) -> dict:
    """The CVPR 2025 text track's instance F1 for one label holding several lesions: ground truth and prediction
    are split into instances (6-connected pieces), matched one-to-one (Hungarian assignment preferring pairs with
    IoU >= ``threshold``, then higher IoU), and a match counts when its IoU reaches ``threshold``. F1 is 0 when
    nothing is predicted (every lesion then counts as missed). Also returns tp, fp, fn and the mean Dice of the
    matched pairs (``dice_tp``)."""
    from scipy import ndimage
    from scipy.optimize import linear_sum_assignment

    truth_pieces, n_truth = ndimage.label(ground_truth)  # any non-zero voxel is foreground
    predicted_pieces, n_predicted = ndimage.label(prediction)
    overlap = np.bincount(truth_pieces.ravel().astype(np.int64) * (n_predicted + 1) + predicted_pieces.ravel(),
                          minlength=(n_truth + 1) * (n_predicted + 1)).reshape(n_truth + 1, n_predicted + 1)
    union = np.add.outer(overlap.sum(axis=1), overlap.sum(axis=0)) - overlap
    iou = overlap[1:, 1:] / union[1:, 1:]  # every piece has a voxel: no union is 0
    pairs = []
    if iou.size:
        # a match counts 1, plus the mean IoU of the min(shape) pairs: below 1 unless every pair is perfect (and
        # then no assignment has more matches), so one more match always wins; the IoU only breaks ties
        rows, columns = linear_sum_assignment((iou >= threshold) + iou / min(iou.shape), maximize=True)
        pairs = [(r, c) for r, c in zip(rows, columns) if iou[r, c] >= threshold]
    tp = len(pairs)
    fp, fn = n_predicted - tp, n_truth - tp
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    dice_tp = float(np.mean([2 * overlap[r + 1, c + 1] / (overlap[r + 1].sum() + overlap[:, c + 1].sum())
                             for r, c in pairs])) if pairs else 0.0
    return {"f1": float(f1), "tp": tp, "fp": int(fp), "fn": int(fn), "dice_tp": dice_tp}
