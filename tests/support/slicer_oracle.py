"""The Slicer module's logic on the ground-truth oracle (no model): the bridge's answers are checked for placement."""

from __future__ import annotations

from medsam3.interaction.engine import SegmentationEngine
from medsam3.transports.backend import BackendInfo, LocalBackend
from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic

from oracle import GroundTruthOracle


def oracle_logic() -> MedicalSAM3SlicerLogic:
    return MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(GroundTruthOracle()),
                                               BackendInfo(model="ground-truth-oracle", device="cpu", image_size=1008)))
