"""The exact map between a slice image and the square image the model sees.

A slice of H x W pixels with pixel spacing (sy, sx) millimetres is scaled by one factor in millimetres so that
anatomy keeps its true aspect (a coronal slice of a 5 mm CT is stretched along its rows), then centred in the
model's S x S square with padding. Coordinates follow SAM's convention: an integer coordinate is a pixel centre,
so pixel ``u`` covers ``[u - 0.5, u + 0.5)``. Every image, prompt and mask crosses between the slice and the
model only through this class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ModelFrame:
    image_shape: tuple[int, int]  # slice (rows, columns)
    model_size: int  # S
    content_shape: tuple[int, int]  # rows, columns the slice occupies inside the model square
    offset: tuple[int, int]  # first model row, column of the slice content

    @classmethod
    def fit(cls, image_shape: tuple[int, int], pixel_spacing: tuple[float, float], model_size: int) -> "ModelFrame":
        rows, columns = image_shape
        height_mm, width_mm = rows * pixel_spacing[0], columns * pixel_spacing[1]
        scale = model_size / max(height_mm, width_mm)  # model pixels per millimetre
        content = (max(1, min(model_size, round(height_mm * scale))), max(1, min(model_size, round(width_mm * scale))))
        offset = ((model_size - content[0]) // 2, (model_size - content[1]) // 2)
        return cls(tuple(image_shape), int(model_size), content, offset)

    @property
    def _row_scale(self) -> float:
        return self.content_shape[0] / self.image_shape[0]

    @property
    def _column_scale(self) -> float:
        return self.content_shape[1] / self.image_shape[1]

    # --- coordinates -------------------------------------------------------------------------------------
    def slice_to_model_xy(self, row_column: np.ndarray) -> np.ndarray:
        """Slice (row, column) pixel coordinates (N, 2) -> model (x, y) coordinates (N, 2)."""
        rc = np.atleast_2d(np.asarray(row_column, dtype=np.float64))
        y = self.offset[0] + (rc[:, 0] + 0.5) * self._row_scale - 0.5
        x = self.offset[1] + (rc[:, 1] + 0.5) * self._column_scale - 0.5
        return np.stack([x, y], axis=1)

    def model_xy_to_slice(self, xy: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`slice_to_model_xy`."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        row = (xy[:, 1] + 0.5 - self.offset[0]) / self._row_scale - 0.5
        column = (xy[:, 0] + 0.5 - self.offset[1]) / self._column_scale - 0.5
        return np.stack([row, column], axis=1)

    def _slice_coordinates_of_grid(self, grid_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice (row, column) coordinates of the centres of a grid_size x grid_size grid over the model square."""
        centres = (np.arange(grid_size) + 0.5) * (self.model_size / grid_size)  # model edge coordinates
        rows = (centres - self.offset[0]) / self._row_scale - 0.5
        columns = (centres - self.offset[1]) / self._column_scale - 0.5
        return rows, columns

    # --- images --------------------------------------------------------------------------------------------
    def image_to_model(self, image: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """A 2D slice image (float) -> S x S float32 model image, antialiased, padded with ``fill``.

        Resized with torch's bilinear ``interpolate`` (antialiased when shrinking) when torch is installed, else
        with :func:`resize_bilinear`, which computes the same weights in numpy: models that need no torch (the
        Slicer module's self-test) run before the module's dependencies are installed.
        """
        antialias = self.content_shape[0] < self.image_shape[0] or self.content_shape[1] < self.image_shape[1]
        image = np.ascontiguousarray(image, dtype=np.float32)
        try:
            import torch  # imported on use: the Slicer module imports the engine before its dependencies exist
            import torch.nn.functional as F
        except ImportError:
            content = resize_bilinear(image, self.content_shape, antialias)
        else:
            content = F.interpolate(torch.from_numpy(image)[None, None], size=self.content_shape, mode="bilinear",
                                    align_corners=False, antialias=antialias)[0, 0].numpy()
        canvas = np.full((self.model_size, self.model_size), fill, dtype=np.float32)
        r0, c0 = self.offset
        canvas[r0:r0 + self.content_shape[0], c0:c0 + self.content_shape[1]] = content
        return canvas

    def mask_to_model_grid(self, mask: np.ndarray, grid_size: int) -> np.ndarray:
        """A slice mask -> fraction of foreground (0..1) on a grid_size x grid_size grid over the model square."""
        rows, columns = self._slice_coordinates_of_grid(grid_size)
        rr, cc = np.meshgrid(rows, columns, indexing="ij")
        return ndimage.map_coordinates(mask.astype(np.float32), [rr, cc], order=1, mode="constant", cval=0.0)

    def model_grid_to_slice(self, grid: np.ndarray) -> np.ndarray:
        """Values on a G x G grid over the model square (e.g. low-resolution mask logits) -> slice grid.

        Bilinear in the grid, evaluated at each slice pixel centre: upsampling the logits to the model size and
        then resampling to the slice gives the same result up to interpolation order.
        """
        grid = np.asarray(grid, dtype=np.float32)
        g = grid.shape[0]
        rows_n, columns_n = self.image_shape
        model_rows = self.offset[0] + (np.arange(rows_n) + 0.5) * self._row_scale  # model edge coordinates
        model_columns = self.offset[1] + (np.arange(columns_n) + 0.5) * self._column_scale
        grid_rows = model_rows * (g / self.model_size) - 0.5
        grid_columns = model_columns * (g / self.model_size) - 0.5
        rr, cc = np.meshgrid(grid_rows, grid_columns, indexing="ij")
        return ndimage.map_coordinates(grid, [rr, cc], order=1, mode="nearest")


def _bilinear_taps(size_in: int, size_out: int, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights (size_out, taps) of a bilinear resize along one axis, pixel centres aligned
    (``align_corners=False``): the plain two-tap interpolation, or with ``antialias`` the triangle filter widened
    by the shrink factor (what torch's ``interpolate(..., antialias=True)`` and PIL compute)."""
    scale = size_in / size_out
    centres = (np.arange(size_out) + 0.5) * scale
    if not antialias:
        source = np.maximum(centres - 0.5, 0.0)
        first = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
        second = np.minimum(first + 1, size_in - 1)
        fraction = source - first
        return np.stack([first, second], axis=1), np.stack([1.0 - fraction, fraction], axis=1)
    support = max(scale, 1.0)
    first = np.maximum((centres - support + 0.5).astype(np.int64), 0)
    last = np.minimum((centres + support + 0.5).astype(np.int64), size_in)
    taps = int((last - first).max())
    indices = first[:, None] + np.arange(taps)[None, :]
    weights = np.clip(1.0 - np.abs((indices - centres[:, None] + 0.5) / support), 0.0, None)
    weights[indices >= last[:, None]] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return np.minimum(indices, size_in - 1), weights


def resize_bilinear(image: np.ndarray, shape: tuple[int, int], antialias: bool) -> np.ndarray:
    """A 2D float image resized to ``shape`` as torch's bilinear ``interpolate`` (align_corners=False) does."""
    image = np.asarray(image, dtype=np.float64)
    row_indices, row_weights = _bilinear_taps(image.shape[0], shape[0], antialias)
    rows = np.einsum("ot,otc->oc", row_weights, image[row_indices])
    column_indices, column_weights = _bilinear_taps(image.shape[1], shape[1], antialias)
    return np.einsum("ot,rot->ro", column_weights, rows[:, column_indices]).astype(np.float32)
