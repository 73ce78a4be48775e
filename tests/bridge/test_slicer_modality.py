"""MR and CT are recognised from what Slicer's DICOM module stores, and the user can override the modality."""

from __future__ import annotations

import numpy as np
import vtk

from slicer_scene import add_points, new_scene, slicer

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.interaction.engine import SegmentationEngine

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.parameters import MedicalSAM3SlicerParameters
from MedicalSAM3SlicerLib.self_test_model import self_test_model
from MedicalSAM3SlicerLib.volume_nodes import volume_from_node


def volume_node(scene, voxels: np.ndarray, name: str):
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(voxels.shape[::-1])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=True))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetAndObserveImageData(image)
    return node


def as_loaded_from_dicom(scene, node, modality: str) -> None:
    """What Slicer's DICOM plugins do (DICOMLib/DICOMPlugin.py, addSeriesInSubjectHierarchy): the series
    modality is an attribute of the volume's subject-hierarchy item, not of the node."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    hierarchy.SetItemAttribute(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMSeriesModalityAttributeName(),
                               modality)


def test_modality_comes_from_the_dicom_series_item():
    scene = new_scene()
    rng = np.random.default_rng(0)
    # an MR phase-difference map: signed values far below -900 that intensity alone would take for CT air
    mr = volume_node(scene, rng.integers(-4096, 4096, size=(8, 16, 16)).astype(np.int16), "MR phase")
    # a CT cropped inside the body: no air, which intensity alone would not take for CT
    ct = volume_node(scene, rng.integers(-100, 200, size=(8, 16, 16)).astype(np.int16), "CT crop")
    assert volume_from_node(mr).modality == "CT" and volume_from_node(ct).modality == "OT"  # from intensities

    as_loaded_from_dicom(scene, mr, "MR")
    as_loaded_from_dicom(scene, ct, "CT")
    assert volume_from_node(mr).modality == "MR"
    assert volume_from_node(ct).modality == "CT"


def test_the_user_overrides_the_modality_through_the_parameter_node():
    """The module's Modality setting (saved in the scene's parameter node) reaches the logic by itself;
    ``logic.modality`` (scripts) wins over it."""
    scene = new_scene()
    voxels = np.zeros((8, 32, 32), dtype=np.int16)
    voxels[2:6, 8:24, 8:24] = 1000
    node = volume_node(scene, voxels, "unlabelled")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    clicks = add_points(scene, [16.0, 16.0, 4.0])
    model = self_test_model()
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(model), BackendInfo(
        model=model.name, device="cpu", image_size=model.image_size)))

    def modality():
        return logic.prepare(node, segmentation, positive_points=clicks).state.volume.modality

    assert modality() == "OT"  # no parameter node yet (a script that never showed the module)
    parameters = MedicalSAM3SlicerParameters.from_scene(scene)
    assert parameters.modality == "auto" and parameters.modality_override is None
    assert modality() == "OT"
    parameters.modality = "MR"
    assert modality() == "MR"
    logic.modality = "CT"
    assert modality() == "CT"
    logic.modality = None
    parameters.modality = "auto"
    assert modality() == "OT"
    parameters.modality = "PET"  # not a choice: automatic
    assert modality() == "OT"
