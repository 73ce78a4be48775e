"""A stand-in network that sees orientation: "the bright region under the click, on one side of a slanted line".

The bright-region model (:mod:`.bright_region_model`) answers the same whichever way up the picture is: a slice
flipped on its way to the model and its mask flipped back on the way out give the right voxels, so a consistent
flip, mirror or transpose of every picture is invisible to it. This model keeps only the part of the clicked
bright region that lies up and to the left of the line through the click

    (y - y_click) + (1 + sqrt 2) (x - x_click) <= 0        (model pixels: x to the right, y down)

The line's normal points 22.5 degrees off the rows: every flip, mirror, transpose and quarter turn of the picture
turns it by at least 45 degrees into one of seven other directions, so any of them moves the answer onto another
part of the object. The model square keeps
millimetres isotropic (:class:`medsam3.geometry.model_frame.ModelFrame`), so a test computes the same half-plane
in millimetres from the voxel grid alone. A box keeps the bright pixels inside it on the same side of the line
through its centre.
"""

from __future__ import annotations

import numpy as np

from .bright_region_model import BrightRegionModel

# the half-plane kept: DOWN_WEIGHT * (y - y0) + RIGHT_WEIGHT * (x - x0) <= 0
DOWN_WEIGHT, RIGHT_WEIGHT = 1.0, 1.0 + np.sqrt(2.0)


def kept_side(shape: tuple[int, int], x0: float, y0: float) -> np.ndarray:
    """Pixels (rows y, columns x) on the kept side of the line through (x0, y0), the line itself included."""
    rows, columns = np.mgrid[0:shape[0], 0:shape[1]]
    return DOWN_WEIGHT * (rows - y0) + RIGHT_WEIGHT * (columns - x0) <= 0


class SidedRegionModel(BrightRegionModel):
    """:class:`BrightRegionModel` whose clicks and boxes keep only one side of the object (see the module)."""

    name = "sided-bright-region"

    def _kept_part(self, shape: tuple[int, int], x: float, y: float) -> np.ndarray:
        return kept_side(shape, x, y)
