"""A real MRML scene in plain Python (slicer-core), set up the way the Slicer application sets it up, and helpers
that load test volumes through MRML storage nodes and place markups in world coordinates."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "MedicalSAM3Slicer"))

import slicer  # noqa: E402  (slicer-core, pinned in requirements/dev.txt: a missing wheel must fail, not skip)
import vtk  # noqa: E402

from medsam3.geometry.volume import Volume  # noqa: E402
from medsam3.files.volume_io import set_image_geometry  # noqa: E402

from MedicalSAM3SlicerLib.volume_nodes import array_to_matrix  # noqa: E402


def _register_segmentation_converters() -> None:
    """What the Segmentations module does when the application starts."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not factory.GetConverterRules():
        for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                     slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
            factory.RegisterConverterRule(rule())


def new_scene():
    """A fresh scene installed as ``slicer.mrmlScene``."""
    _register_segmentation_converters()
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)  # Axial, Coronal, Sagittal views
    slicer.mrmlScene = scene
    return scene


def load_volume_node(scene, volume: Volume, directory: Path, name: str = "source"):
    """Write ``volume`` to NIfTI and load it through a vtkMRMLVolumeArchetypeStorageNode, as Slicer loads files."""
    import SimpleITK as sitk

    path = Path(directory) / f"{name}.nii.gz"
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    set_image_geometry(image, volume.ijk_to_ras)
    sitk.WriteImage(image, str(path))
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    assert storage.ReadData(node), f"could not read {path}"
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def add_linear_transform(scene, matrix: np.ndarray, name: str = "rotation"):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(array_to_matrix(matrix))
    return node


def add_points(scene, world_points, name: str = "clicks", transform_node=None):
    """A point list whose control points are at the given world RAS positions (also when under a transform)."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    if transform_node is not None:
        node.SetAndObserveTransformNodeID(transform_node.GetID())
    for point in np.atleast_2d(world_points):
        node.AddControlPointWorld(*[float(v) for v in point])
    return node


def add_roi(scene, world_corner_a, world_corner_b, name: str = "box"):
    """A box drawn as the module's box tool draws it: a bounding-box ROI from two clicked opposite corners."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    node.SetROIType(slicer.vtkMRMLMarkupsROINode.ROITypeBoundingBox)
    for corner in (world_corner_a, world_corner_b):
        node.AddControlPointWorld(*[float(v) for v in corner])
    return node


def add_slice_node(scene, axis: str, centre_world):
    """A slice view node in Slicer's default orientation for ``axis``, centred on a world point."""
    node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    node.SetLayoutName({"axial": "Red", "coronal": "Green", "sagittal": "Yellow"}[axis])
    {"axial": node.SetOrientationToAxial, "coronal": node.SetOrientationToCoronal,
     "sagittal": node.SetOrientationToSagittal}[axis]()
    node.JumpSlice(*[float(v) for v in centre_world])
    node.UpdateMatrices()
    return node


def voxels_of(volume_node) -> np.ndarray:
    from vtk.util import numpy_support

    image = volume_node.GetImageData()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(image.GetDimensions()[::-1]).copy()


def world_of_voxel(volume_node, ijk) -> np.ndarray:
    """World RAS of a voxel (through the node's matrix and parent transforms), computed with VTK alone."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    local = matrix.MultiplyPoint([*map(float, ijk), 1.0])[:3]
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is None:
        return np.asarray(local)
    to_world = vtk.vtkGeneralTransform()
    transform_node.GetTransformToWorld(to_world)
    return np.asarray(to_world.TransformPoint(list(local)))
