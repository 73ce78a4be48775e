"""The ground-truth oracle of the tests: the engine's bright-region model on volumes carrying their ground truth
as intensity (see :mod:`medsam3.model.bright_region_model`)."""

from __future__ import annotations

import numpy as np

from medsam3.model.bright_region_model import BrightRegionModel as GroundTruthOracle  # noqa: F401 (the tests' name)
from medsam3.geometry.volume import Volume


def ground_truth_volume(reference: Volume, mask: np.ndarray) -> Volume:
    """A CT volume with the reference geometry whose voxels are bright (1000 HU) inside ``mask``."""
    return Volume(np.where(mask, 1000, -1000).astype(np.int16), reference.ijk_to_ras, modality="CT",
                  name=reference.name + " (ground truth as image)")
