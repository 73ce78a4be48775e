"""A simulated user: where a radiologist would click and which box they would draw, read off the ground truth.

It follows the interactive benchmarks (nnInteractive, SAM-Med3D, the CVPR 2025 challenge), with clicks placed
on one slice of one view as in the module:
- the first click goes at the interior point farthest from the boundary, on the slice with the largest
  cross-section of the structure;
- each next click goes at the centre (the point farthest from its boundary) of the largest error region, on
  the slice where that region is largest: a missed region gives a positive click, an extra region a negative one;
- the box is the ground truth's bounding box on its largest slice.
Distances are in millimetres (the in-plane pixel spacing), ties go to the first voxel in row-major order, so
the same masks always give the same click.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ...interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt
from ...geometry.slicing import SliceAxis, SliceGeometry
from ...geometry.volume import Volume

_FULL_3D = ndimage.generate_binary_structure(3, 3)  # 26-connected regions, as the challenge labels errors


@dataclass(frozen=True)
class Click:
    """A click at voxel (i, j, k) on ``slice_index`` of the view; ``region_voxels`` is the error it answers."""

    ijk: tuple[int, int, int]
    positive: bool
    slice_index: int
    region_voxels: int

    def prompt(self, axis: SliceAxis) -> SlicePrompt:
        return SlicePrompt(axis, points=(PointPrompt(tuple(float(v) for v in self.ijk), self.positive),),
                           slice_index=self.slice_index)

    def describe(self) -> str:
        return f"{'positive' if self.positive else 'negative'} click ijk=({','.join(map(str, self.ijk))})"


@dataclass(frozen=True)
class Box:
    """Two opposite corner voxels (i, j, k) of a box on ``slice_index``."""

    corner_a: tuple[int, int, int]
    corner_b: tuple[int, int, int]
    slice_index: int

    def prompt(self, axis: SliceAxis) -> SlicePrompt:
        return SlicePrompt(axis, box=BoxPrompt(tuple(map(float, self.corner_a)), tuple(map(float, self.corner_b))),
                           slice_index=self.slice_index)

    def describe(self) -> str:
        return f"box ijk=({','.join(map(str, self.corner_a))})-({','.join(map(str, self.corner_b))})"


def _centre_of(region: np.ndarray, pixel_spacing: tuple[float, float]) -> tuple[int, int]:
    """(row, column) of the region's pixel farthest from its boundary (the image edge counts as boundary)."""
    padded = np.pad(region, 1)
    distance = ndimage.distance_transform_edt(padded, sampling=pixel_spacing)[1:-1, 1:-1]
    row, column = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(row), int(column)


class ClickSimulator:
    """Clicks and boxes for masks of one volume in one view (masks are [k, j, i] arrays like the volume's)."""

    def __init__(self, volume: Volume, axis: SliceAxis | str = SliceAxis.AXIAL):
        self.axis = SliceAxis.parse(axis)
        self.geometry = SliceGeometry.for_volume(volume, self.axis)

    def _ijk(self, slice_index: int, row: int, column: int) -> tuple[int, int, int]:
        ijk = self.geometry.slice_to_ijk([[slice_index, row, column]])[0]
        return tuple(int(round(v)) for v in ijk)

    def first_click(self, ground_truth: np.ndarray) -> Click:
        stack = self.geometry.as_slice_stack(np.asarray(ground_truth, dtype=bool))
        if not stack.any():
            raise ValueError("The structure is empty: there is nothing to click on.")
        index = int(np.argmax(stack.sum(axis=(1, 2))))
        row, column = _centre_of(stack[index], self.geometry.pixel_spacing)
        return Click(self._ijk(index, row, column), True, index, int(stack.sum()))

    def next_click(self, ground_truth: np.ndarray, prediction: np.ndarray) -> Click | None:
        """The correction a user makes next; None when prediction and ground truth agree everywhere."""
        truth = self.geometry.as_slice_stack(np.asarray(ground_truth, dtype=bool))
        predicted = self.geometry.as_slice_stack(np.asarray(prediction, dtype=bool))
        best: tuple[int, bool, np.ndarray] | None = None
        for positive, error in ((True, truth & ~predicted), (False, predicted & ~truth)):
            if not error.any():
                continue
            labels, count = ndimage.label(error, structure=_FULL_3D)
            sizes = np.bincount(labels.reshape(-1), minlength=count + 1)
            sizes[0] = 0
            largest = int(np.argmax(sizes))
            if best is None or sizes[largest] > best[0]:
                best = (int(sizes[largest]), positive, labels == largest)
        if best is None:
            return None
        size, positive, region = best
        index = int(np.argmax(region.sum(axis=(1, 2))))
        row, column = _centre_of(region[index], self.geometry.pixel_spacing)
        return Click(self._ijk(index, row, column), positive, index, size)

    def box(self, ground_truth: np.ndarray) -> Box:
        """The bounding box of the structure on its largest slice. A box must span two voxels each way: a
        structure one voxel thin gets a box one voxel wider on each side (within the image)."""
        stack = self.geometry.as_slice_stack(np.asarray(ground_truth, dtype=bool))
        if not stack.any():
            raise ValueError("The structure is empty: there is nothing to draw a box around.")
        index = int(np.argmax(stack.sum(axis=(1, 2))))
        rows, columns = np.nonzero(stack[index])
        low, high = [int(rows.min()), int(columns.min())], [int(rows.max()), int(columns.max())]
        for axis, size in enumerate(self.geometry.image_shape):
            if high[axis] - low[axis] < 1:
                low[axis], high[axis] = max(0, low[axis] - 1), min(size - 1, high[axis] + 1)
        return Box(self._ijk(index, low[0], low[1]), self._ijk(index, high[0], high[1]), index)
