"""Slices of a volume as a radiologist sees them, and the exact map between slice pixels and voxels.

An axial, coronal or sagittal slice is a plane of the voxel grid: the IJK axis closest to the view's normal
(superior, anterior, right in RAS) is the slice axis, and the two other IJK axes become the image rows and
columns, flipped where needed so that the picture is oriented as Slicer shows it (patient left on the screen's
right in axial and coronal views, anterior on the left in sagittal views, superior up). The orientation comes
from the volume's RAS directions, never from the order of the array's axes, so a volume stored flipped or
permuted still gives the model the picture it was trained on. No voxel is interpolated: slice pixels are voxels.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..errors import PromptError
from .volume import Volume


class SliceAxis(str, Enum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"

    @classmethod
    def parse(cls, value: "SliceAxis | str") -> "SliceAxis":
        if isinstance(value, SliceAxis):
            return value
        text = str(value).strip().lower()
        aliases = {"ax": cls.AXIAL, "axial": cls.AXIAL, "red": cls.AXIAL, "transverse": cls.AXIAL,
                   "cor": cls.CORONAL, "coronal": cls.CORONAL, "green": cls.CORONAL,
                   "sag": cls.SAGITTAL, "sagittal": cls.SAGITTAL, "yellow": cls.SAGITTAL}
        if text not in aliases:
            raise PromptError(f"Unknown slice axis {value!r}; use axial, coronal or sagittal.")
        return aliases[text]


# For each view: the RAS direction of the slice normal, of the screen's right and of the screen's down,
# as Slicer's default Red, Green and Yellow views display them.
_VIEW_DIRECTIONS = {
    SliceAxis.AXIAL: ((0, 0, 1), (-1, 0, 0), (0, -1, 0)),
    SliceAxis.CORONAL: ((0, 1, 0), (-1, 0, 0), (0, 0, -1)),
    SliceAxis.SAGITTAL: ((1, 0, 0), (0, -1, 0), (0, 0, -1)),
}


def _best_axis_assignment(directions: np.ndarray, targets: list[np.ndarray]) -> tuple[int, int, int]:
    """Assign each target RAS direction a distinct IJK axis maximising total alignment."""
    best, best_score = None, -1.0
    for permutation in itertools.permutations(range(3)):
        score = sum(abs(float(directions[:, axis] @ target)) for axis, target in zip(permutation, targets))
        if score > best_score + 1e-9:
            best, best_score = permutation, score
    return best


@dataclass(frozen=True)
class SliceGeometry:
    """How one view of a volume lays out its slices.

    ``normal_axis``, ``row_axis`` and ``column_axis`` are IJK axis numbers (0 = i, 1 = j, 2 = k);
    ``row_flipped`` / ``column_flipped`` say whether image rows / columns run against that IJK axis.
    Slice index ``s`` is the voxel index along ``normal_axis`` (never flipped, so it equals the voxel index).
    """

    axis: SliceAxis
    shape_ijk: tuple[int, int, int]
    spacing_ijk: tuple[float, float, float]
    normal_axis: int
    row_axis: int
    column_axis: int
    row_flipped: bool
    column_flipped: bool

    @classmethod
    def for_volume(cls, volume: Volume, axis: SliceAxis | str) -> "SliceGeometry":
        axis = SliceAxis.parse(axis)
        normal, right, down = (np.asarray(v, dtype=np.float64) for v in _VIEW_DIRECTIONS[axis])
        directions = volume.directions
        normal_axis, column_axis, row_axis = _best_axis_assignment(directions, [normal, right, down])
        return cls(
            axis=axis,
            shape_ijk=volume.shape_ijk,
            spacing_ijk=tuple(float(s) for s in volume.spacing),
            normal_axis=normal_axis,
            row_axis=row_axis,
            column_axis=column_axis,
            row_flipped=bool(directions[:, row_axis] @ down < 0),
            column_flipped=bool(directions[:, column_axis] @ right < 0),
        )

    @property
    def slice_count(self) -> int:
        return self.shape_ijk[self.normal_axis]

    @property
    def image_shape(self) -> tuple[int, int]:
        """(rows, columns) of one slice image."""
        return self.shape_ijk[self.row_axis], self.shape_ijk[self.column_axis]

    @property
    def pixel_spacing(self) -> tuple[float, float]:
        """Millimetres between rows and between columns."""
        return self.spacing_ijk[self.row_axis], self.spacing_ijk[self.column_axis]

    def _numpy_order(self) -> tuple[int, int, int]:
        # IJK axis a is numpy axis 2 - a of an array indexed [k, j, i].
        return 2 - self.normal_axis, 2 - self.row_axis, 2 - self.column_axis

    def as_slice_stack(self, array: np.ndarray) -> np.ndarray:
        """A view of a [k, j, i] array as [slice, row, column] (no copy)."""
        stack = np.transpose(array, self._numpy_order())
        if self.row_flipped:
            stack = stack[:, ::-1, :]
        if self.column_flipped:
            stack = stack[:, :, ::-1]
        return stack

    def from_slice_stack(self, stack: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`as_slice_stack`: a [slice, row, column] array back to [k, j, i] (a view)."""
        if self.row_flipped:
            stack = stack[:, ::-1, :]
        if self.column_flipped:
            stack = stack[:, :, ::-1]
        return np.transpose(stack, np.argsort(self._numpy_order()))

    def check_slice_index(self, index: int) -> int:
        if not 0 <= int(index) < self.slice_count:
            raise PromptError(f"Slice {index} is outside the volume: the {self.axis.value} view has slices "
                              f"0 to {self.slice_count - 1}.")
        return int(index)

    def slice_image(self, array: np.ndarray, index: int) -> np.ndarray:
        """One slice as a 2D (rows, columns) view of a [k, j, i] array."""
        return self.as_slice_stack(array)[self.check_slice_index(index)]

    def ijk_to_slice(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous voxel coordinates (N, 3) -> (slice, row, column) continuous coordinates (N, 3)."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        rows_n, columns_n = self.image_shape
        row = ijk[:, self.row_axis]
        column = ijk[:, self.column_axis]
        if self.row_flipped:
            row = rows_n - 1 - row
        if self.column_flipped:
            column = columns_n - 1 - column
        return np.stack([ijk[:, self.normal_axis], row, column], axis=1)

    def slice_to_ijk(self, slice_row_column: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`ijk_to_slice`."""
        src = np.atleast_2d(np.asarray(slice_row_column, dtype=np.float64))
        rows_n, columns_n = self.image_shape
        row, column = src[:, 1], src[:, 2]
        if self.row_flipped:
            row = rows_n - 1 - row
        if self.column_flipped:
            column = columns_n - 1 - column
        ijk = np.empty_like(src)
        ijk[:, self.normal_axis] = src[:, 0]
        ijk[:, self.row_axis] = row
        ijk[:, self.column_axis] = column
        return ijk
