"""``--protocols cvpr25``: the protocol and scoring of the CVPR 2025 challenge "Foundation Models for Interactive 3D
Biomedical Image Segmentation" (its public ``CVPR25_iter_eval.py`` and ``get_boxes.py``), on the engine's sessions.

Per case, every label present in the ground truth (the challenge's classes) runs the same chain of 6 steps:
1. one box on the class's middle labelled slice (``z_mid``: the axial index of the middle foreground voxel in
   array order), the slice's bounding box widened by a random 0-5 px margin (scaled by the slice size / 256, as
   ``get_boxes.py`` draws it) and the class's z range;
2-6. five clicks, each answering the current prediction's error for that class: the error is missed and extra
   voxels together, split into 3D regions (26-connected); the click goes to the voxel of the largest region
   deepest inside it (Euclidean distance transform in voxel units, outside the image counting as outside the
   region), ties broken by a generator seeded 42 before every choice, as the official ``sample_coord``; its sign
   is the ground truth at that voxel. With no error left no click is added, and the model runs again anyway.
Scoring per step: Dice and NSD per class, averaged over the classes of the case; NSD is 0 when that mean Dice is
<= 0.2 (the challenge skips it); DSC_AUC and NSD_AUC are the trapezoidal areas over the 5 click steps (unit
steps), and the final values are those of step 6. NSD is computed with the ``.npz`` spacing as the challenge's
script passes it (the stored (x, y, z) numbers onto the (D, H, W) array) and, in a second column, with the
spacing each array axis really has.

How it maps onto the engine (a session takes boxes and clicks on slices, and propagates through the volume):
the box is drawn on slice ``z_mid`` of the view slicing the array's first axis and propagated through the volume;
the prediction is then cleared outside the box's z range at every step (the box says the object lies within it);
a 3D click is a click on the slice through its voxel, and the object is re-propagated from the box and all
clicks. The model's classes run in separate sessions; their masks are merged into one label map (a later label
wins where two overlap), which the next clicks answer, as the challenge's clicks answer its label map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
from scipy import ndimage

from ...errors import MedSam3Error
from ...geometry.slicing import SliceAxis, SliceGeometry
from ...geometry.volume import Volume
from ...interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt
from ...transports.backend import SegmentationBackend
from .metrics import DEFAULT_NSD_TOLERANCE_MM, dice, normalised_surface_distance
from .protocols import EncodingClock, _Timed

CLICKS = 5
STEPS = CLICKS + 1
DICE_GATE = 0.2  # NSD is 0 when a step's class-averaged Dice is not above it
SECONDS_PER_CLASS = 90.0  # the challenge's time limit per class (all 6 steps)
BOX_SEED, CLICK_SEED = 2025, 42
_FULL_3D = np.ones((3, 3, 3), dtype=bool)


# --- the simulated user -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChallengeBox:
    """The challenge's box of one class, in array (D, H, W) indices: z along axis 0, y axis 1, x axis 2."""

    z_min: int
    z_max: int
    z_mid: int
    x_min: int
    y_min: int
    x_max: int
    y_max: int

    def describe(self) -> str:
        return (f"box z={self.z_min}..{self.z_max} mid {self.z_mid} "
                f"x={self.x_min}..{self.x_max} y={self.y_min}..{self.y_max}")


def challenge_box(truth: np.ndarray, rng: np.random.RandomState) -> ChallengeBox:
    """The box ``get_boxes.py`` draws for one class; ``rng`` draws the margin (0-5 px, scaled by size / 256)."""
    z, _, _ = np.nonzero(truth)
    if z.size == 0:
        raise ValueError("The class is empty: there is nothing to draw a box around.")
    z_mid = int(z[len(z) // 2])
    rows, columns = np.nonzero(truth[z_mid])
    height, width = truth.shape[1:]
    shift = int(rng.randint(0, 6))
    shift_x, shift_y = int(shift * width / 256), int(shift * height / 256)
    return ChallengeBox(int(z.min()), int(z.max()), z_mid,
                        max(0, int(columns.min()) - shift_x), max(0, int(rows.min()) - shift_y),
                        min(width - 1, int(columns.max()) + shift_x), min(height - 1, int(rows.max()) + shift_y))


@dataclass(frozen=True)
class ChallengeClick:
    """A click at array index (z, y, x); ``component_voxels`` is the size of the error region it answers."""

    zyx: tuple[int, int, int]
    positive: bool
    component_voxels: int

    def describe(self) -> str:
        return f"{'positive' if self.positive else 'negative'} click zyx=({','.join(map(str, self.zyx))})"


def _depth(region: np.ndarray) -> np.ndarray:
    """Euclidean distance (voxel units) of each voxel of ``region`` to the nearest voxel outside it, voxels outside
    the array counting as outside (the challenge pads its crop with background)."""
    hits = np.argwhere(region)
    low, high = hits.min(axis=0), hits.max(axis=0) + 1
    crop = tuple(slice(a, b) for a, b in zip(low, high))
    inner = ndimage.distance_transform_edt(np.pad(region[crop], 1))[1:-1, 1:-1, 1:-1]
    depth = np.zeros(region.shape, dtype=np.float64)
    depth[crop] = inner * region[crop]
    return depth


def challenge_click(truth: np.ndarray, prediction: np.ndarray) -> ChallengeClick | None:
    """The challenge's next click for one class; None when prediction and ground truth agree everywhere."""
    truth = np.asarray(truth, dtype=bool)
    error = truth != np.asarray(prediction, dtype=bool)
    if not error.any():
        return None
    regions, _ = ndimage.label(error, structure=_FULL_3D)  # numbered in raster order, as cc3d numbers them
    sizes = np.bincount(regions.reshape(-1))
    sizes[0] = 0
    largest = int(np.argmax(sizes))  # equal sizes: the first region in raster order
    depth = _depth(regions == largest)
    deepest = np.argwhere(depth == depth.max())
    chosen = tuple(int(v) for v in deepest[np.random.RandomState(CLICK_SEED).choice(len(deepest))])
    return ChallengeClick(chosen, bool(truth[chosen]), int(sizes[largest]))


# --- scoring ----------------------------------------------------------------------------------------------------
def class_scores(truth: np.ndarray, segmentation: np.ndarray, value: int, stored_spacing, true_spacing,
                 tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> dict:
    """Dice and NSD of one class: NSD with the spacing as the challenge passes it and with the true spacing."""
    gt, predicted = truth == value, segmentation == value
    return {"dice": dice(gt, predicted),
            "nsd": normalised_surface_distance(gt, predicted, stored_spacing, tolerance_mm),
            "nsd_geometric": normalised_surface_distance(gt, predicted, true_spacing, tolerance_mm)}


def case_scores(per_class: list[dict]) -> dict:
    """The challenge's figures of one step: the class means, NSD 0 when the mean Dice is <= 0.2."""
    mean_dice = float(np.mean([0.0 if c["dice"] is None else c["dice"] for c in per_class]))
    gated = mean_dice > DICE_GATE
    return {"dice": mean_dice,
            "nsd": float(np.mean([c["nsd"] or 0.0 for c in per_class])) if gated else 0.0,
            "nsd_geometric": float(np.mean([c["nsd_geometric"] or 0.0 for c in per_class])) if gated else 0.0}


def click_auc(values_per_step: list[float]) -> float:
    """Area under a figure over the 5 click steps (steps 2-6), unit steps, as the challenge integrates it."""
    return float(np.trapezoid(np.asarray(values_per_step[-CLICKS:], dtype=np.float64)))


# --- running the chain ------------------------------------------------------------------------------------------
@dataclass
class ClassStep:
    value: int
    prompt: str
    seconds: float
    encode_seconds: float | None


@dataclass
class ChallengeStep:
    step: int  # 1 = box, 2..6 = clicks 1..5
    segmentation: np.ndarray  # label map in the input's array order and label values
    classes: list[ClassStep] = field(default_factory=list)


def view_of_first_array_axis(volume: Volume) -> SliceAxis:
    """The view whose slices are the array's first axis (the challenge's D, its boxes' slices)."""
    for axis in SliceAxis:
        if SliceGeometry.for_volume(volume, axis).normal_axis == 2:
            return axis
    raise MedSam3Error(f"{volume.name}: no view slices along the array's first axis, where the challenge draws its "
                       "boxes; reorient the image to an axial, coronal or sagittal stack.")


def _box_prompt(box: ChallengeBox, view: SliceAxis) -> SlicePrompt:
    x = (box.x_min, box.x_max) if box.x_max > box.x_min else (box.x_min - 0.5, box.x_max + 0.5)
    y = (box.y_min, box.y_max) if box.y_max > box.y_min else (box.y_min - 0.5, box.y_max + 0.5)
    return SlicePrompt(view, box=BoxPrompt((float(x[0]), float(y[0]), float(box.z_mid)),
                                           (float(x[1]), float(y[1]), float(box.z_mid))), slice_index=box.z_mid)


def _click_prompt(click: ChallengeClick, geometry: SliceGeometry) -> SlicePrompt:
    z, y, x = click.zyx
    index = int(round(geometry.ijk_to_slice([(x, y, z)])[0][0]))
    return SlicePrompt(geometry.axis, points=(PointPrompt((float(x), float(y), float(z)), click.positive),),
                       slice_index=index)


def run_cvpr25(backend: SegmentationBackend, volume_for: Callable[[int], Volume], labels: np.ndarray,
               names: dict[int, str], clock: EncodingClock) -> Iterator[ChallengeStep]:
    """The challenge's 6 steps on one case; ``volume_for(value)`` is the image a class is segmented on."""
    values = [int(v) for v in np.unique(labels) if v != 0]
    rng = np.random.RandomState(BOX_SEED)
    boxes = {v: challenge_box(labels == v, rng) for v in values}
    sessions, objects, geometries = {}, {}, {}
    try:
        for value in values:
            volume = volume_for(value)
            view = view_of_first_array_axis(volume)
            geometries[value] = SliceGeometry.for_volume(volume, view)
            sessions[value] = backend.open_session(volume)
            objects[value] = sessions[value].new_object_id()
        segmentation = np.zeros(labels.shape, dtype=labels.dtype)
        for step in range(1, STEPS + 1):
            done, masks = [], {}
            for value in values:
                session, box = sessions[value], boxes[value]
                click = None if step == 1 else challenge_click(labels == value, segmentation == value)
                if step == 1 or click is None:  # the box, or the same prompts again (the model runs anyway)
                    prompt, said = _box_prompt(box, geometries[value].axis), \
                        box.describe() if step == 1 else "no error left: model run again"
                else:
                    prompt, said = _click_prompt(click, geometries[value]), click.describe()
                with _Timed(clock) as timed:
                    session.add_prompt(objects[value], prompt, whole_volume=True, target_text=names[value])
                mask = np.asarray(session.mask(objects[value]), dtype=bool).copy()
                mask[:box.z_min] = False
                mask[box.z_max + 1:] = False
                masks[value] = mask
                done.append(ClassStep(value, said, timed.seconds, timed.encode_seconds))
            segmentation = np.zeros(labels.shape, dtype=labels.dtype)
            for value in values:
                segmentation[masks[value]] = value
            yield ChallengeStep(step, segmentation, done)
    finally:
        for session in sessions.values():
            session.close()
