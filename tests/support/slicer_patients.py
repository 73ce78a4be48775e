"""Two small patients for the bridge's journey tests (tests/bridge/test_slicer_data_safety.py and the scene-reload,
closed-surface and prefetch tests): bright-box CTs loaded as MRML volume nodes, and the bright-region stand-in model,
optionally held inside its first encoding (a prediction under way)."""

from __future__ import annotations

import threading

import numpy as np

from slicer_scene import load_volume_node

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.geometry.volume import Volume
from medsam3.interaction.engine import SegmentationEngine

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic

from oracle import GroundTruthOracle

__all__ = ["SHAPE", "A_BOX", "B_BOX", "GatedOracle", "GroundTruthOracle", "bright_box", "box_mask", "load_patient",
           "logic_with", "segment_count"]

SHAPE = (8, 40, 40)  # K, J, I


def bright_box(low, high, spacing=(1.0, 1.0, 2.0), name="patient") -> Volume:
    """A CT whose voxels are bright (1000 HU) inside the box low..high (I, J, K, inclusive), air elsewhere."""
    array = np.full(SHAPE, -1000, dtype=np.int16)
    (i0, j0, k0), (i1, j1, k1) = low, high
    array[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = 1000
    return Volume(array, np.diag([*spacing, 1.0]), modality="CT", name=name)


def box_mask(low, high) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    (i0, j0, k0), (i1, j1, k1) = low, high
    mask[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = True
    return mask


A_BOX, B_BOX = ((5, 5, 2), (15, 15, 5)), ((22, 20, 2), (34, 33, 6))


class GatedOracle(GroundTruthOracle):
    """The stand-in model, held inside its first encoding until ``release`` is set (a prediction under way)."""

    def __init__(self, give_up_after: float = 60):
        super().__init__()
        self.started, self.release = threading.Event(), threading.Event()
        self.give_up_after = give_up_after

    def _encode(self, image):
        self.started.set()
        assert self.release.wait(self.give_up_after), "the test never released the model"
        return super()._encode(image)


def logic_with(model) -> MedicalSAM3SlicerLogic:
    return MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(model), BackendInfo("stand-in", "cpu", 1008)))


def load_patient(scene, directory, box, name):
    directory.mkdir(exist_ok=True)
    volume = load_volume_node(scene, bright_box(*box, name=name), directory, name=name)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    centre = [(lo + hi) // 2 for lo, hi in zip(*box)]
    return volume, segmentation, centre


def segment_count(segmentation) -> int:
    return segmentation.GetSegmentation().GetNumberOfSegments()
