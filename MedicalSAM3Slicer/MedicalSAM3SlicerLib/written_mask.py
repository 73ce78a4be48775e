"""What the logic remembers of a segment it wrote: the object's voxels, inside their bounding box only.

The logic compares a segment with what it last wrote to see whether the user edited it by hand since (then the
model starts from the edited voxels). A full-volume boolean array per segment held 1 byte per voxel of the volume
for every segment the model ever touched (78 MB each for a 512 x 512 x 300 CT) until the scene closed; the
bounding box holds only the object's extent, and nothing for an emptied segment.
"""

from __future__ import annotations

import numpy as np

from medsam3.interaction.session import MaskUpdate, bounding_box


class WrittenMask:
    def __init__(self, shape: tuple[int, int, int]):
        self.shape = tuple(shape)
        self.box: tuple[int, int, int, int, int, int] | None = None  # (k0, k1, j0, j1, i0, i1), half-open
        self.values = np.zeros((0, 0, 0), dtype=bool)

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def _slices(self, box, within=None):
        origin = within[0::2] if within is not None else (0, 0, 0)
        return tuple(slice(box[2 * a] - origin[a], box[2 * a + 1] - origin[a]) for a in range(3))

    def apply(self, update: MaskUpdate) -> None:
        """``mask[update.box] = update.values``, then shrink to the bounding box of what is set."""
        if update.is_empty:
            return
        box = tuple(update.box) if self.box is None else tuple(
            (min if n % 2 == 0 else max)(self.box[n], update.box[n]) for n in range(6))
        grown = np.zeros([box[2 * a + 1] - box[2 * a] for a in range(3)], dtype=bool)
        if self.box is not None:
            grown[self._slices(self.box, box)] = self.values
        grown[self._slices(update.box, box)] = update.values
        inner = bounding_box(grown)
        if inner is None:
            self.box, self.values = None, np.zeros((0, 0, 0), dtype=bool)
            return
        self.values = grown[self._slices(inner)].copy()
        self.box = tuple(box[2 * (n // 2)] + inner[n] for n in range(6))

    def equals(self, mask: np.ndarray) -> bool:
        """Whether a full-volume mask holds exactly these voxels."""
        if self.box is None:
            return not mask.any()
        return bool(np.array_equal(mask[self._slices(self.box)], self.values)
                    and int(np.count_nonzero(mask)) == int(np.count_nonzero(self.values)))
