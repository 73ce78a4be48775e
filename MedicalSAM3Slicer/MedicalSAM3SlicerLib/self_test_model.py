"""The module's self-test fixture: a phantom scene whose object is bright, for the engine's bright-region model
(:class:`medsam3.model.bright_region_model.BrightRegionModel`: no torch, no download), so the self-test checks the
whole path (MRML -> engine -> model space -> segment) inside a real Slicer in a second, before any model is
installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsam3.model.bright_region_model import BrightRegionModel

SELF_TEST_IMAGE_SIZE = 256  # small model images keep the self-test fast


def self_test_model() -> BrightRegionModel:
    return BrightRegionModel(image_size=SELF_TEST_IMAGE_SIZE, mask_grid=SELF_TEST_IMAGE_SIZE // 4)


@dataclass
class Phantom:
    """A scene set up for the self-test: an oblique volume under a rotation, a click on its bright block."""

    volume_node: object
    clicks_node: object
    expected: np.ndarray  # (K, J, I) bool: the bright block


def make_phantom(scene) -> Phantom:
    """Adds the phantom volume (with its transform) and a click at the block's centre, in world coordinates."""
    import vtk
    from vtk.util import numpy_support

    voxels = np.full((30, 60, 50), -1000, dtype=np.int16)
    voxels[10:20, 20:40, 15:30] = 1000
    image = vtk.vtkImageData()
    image.SetDimensions(voxels.shape[::-1])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=True))
    volume_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MedicalSAM3 phantom")
    volume_node.SetAndObserveImageData(image)
    ijk_to_ras = vtk.vtkMatrix4x4()
    for row, values in enumerate([[0.8, 0.1, 0.0, -20.0], [-0.1, 0.8, 0.0, 10.0], [0.0, 0.0, 2.5, 5.0]]):
        for column, value in enumerate(values):
            ijk_to_ras.SetElement(row, column, value)
    volume_node.SetIJKToRASMatrix(ijk_to_ras)
    rotation = vtk.vtkTransform()
    rotation.RotateWXYZ(20, 0.3, 1.0, 0.2)
    rotation.Translate(5.0, -3.0, 8.0)
    transform_node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "MedicalSAM3 phantom rotation")
    transform_node.SetMatrixTransformToParent(rotation.GetMatrix())
    volume_node.SetAndObserveTransformNodeID(transform_node.GetID())

    local = ijk_to_ras.MultiplyPoint([22.0, 30.0, 15.0, 1.0])[:3]
    world = rotation.TransformPoint(local)
    clicks_node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "MedicalSAM3 phantom click")
    clicks_node.AddControlPointWorld(*world)
    return Phantom(volume_node, clicks_node, voxels > 0)


def run_self_test(scene, say=lambda message: None, model=None) -> float:
    """The self-test scenario, in ``scene``: one click on the phantom, whole volume, through the module logic. The
    segment must cover the block (Dice >= 0.95), be named from the typed text, leave the source volume untouched,
    and be emptied by undo; raises AssertionError otherwise, returns the Dice.

    It lives in the installed library so that *Reload and Test* runs in an installed extension too (the
    ``Testing/`` folder is not installed); ctest's Testing/Python/MedicalSAM3SlicerSelfTest.py calls it as well."""
    from medsam3.interaction.engine import SegmentationEngine
    from medsam3.transports.backend import BackendInfo, LocalBackend

    from .logic import MedicalSAM3SlicerLogic
    from .segment_io import segment_mask
    from .volume_nodes import volume_from_node

    say("Segmenting a phantom from one click, whole volume")
    phantom = make_phantom(scene)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    model = model or self_test_model()
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(model), BackendInfo(
        model=model.name, device="cpu", image_size=model.image_size)))
    source_before = volume_from_node(phantom.volume_node).array.copy()
    result = logic.segment(phantom.volume_node, segmentation, text="tumour", positive_points=phantom.clicks_node,
                           view="axial")
    segment_id = result.segment_ids[0]
    mask = segment_mask(segmentation, segment_id, phantom.volume_node)
    dice = float(2 * (mask & phantom.expected).sum() / max(1, mask.sum() + phantom.expected.sum()))
    assert dice >= 0.95, f"the phantom's block came back with Dice {dice:.3f} (needs 0.95)"
    name = segmentation.GetSegmentation().GetSegment(segment_id).GetName()
    assert name == "Tumor", f"the segment is named {name!r}, not 'Tumor'"
    assert np.array_equal(volume_from_node(phantom.volume_node).array, source_before), "the source volume changed"
    logic.undo(phantom.volume_node, segmentation, segment_id)
    assert not segment_mask(segmentation, segment_id, phantom.volume_node).any(), "undo left voxels behind"
    say("Test passed")
    return dice
