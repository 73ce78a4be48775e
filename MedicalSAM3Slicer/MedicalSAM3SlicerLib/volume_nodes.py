"""Scalar volume nodes as engine volumes, in world coordinates.

A volume node stores voxels with an IJK-to-RAS matrix in its own (local) frame; a parent transform moves that
frame in the world where slice views, markups and the user live. The engine gets the world geometry:
``world RAS of a voxel = parent transform ∘ node IJKToRAS``, so slice orientation and prompt positions are
judged as the user sees them. Masks come back in the node's voxel grid, which does not depend on the transform.
"""

from __future__ import annotations

import numpy as np
import vtk
from vtk.util import numpy_support

from medsam3.errors import VolumeError
from medsam3.geometry.volume import Volume


def matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def array_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row, column]))
    return matrix


def local_ijk_to_ras(volume_node) -> np.ndarray:
    """The node's own IJK-to-RAS matrix (without any parent transform)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_to_array(matrix)


def parent_to_world(node) -> np.ndarray:
    """The linear transform from a node's local frame to world RAS (identity without a parent transform)."""
    transform_node = node.GetParentTransformNode()
    if transform_node is None:
        return np.eye(4)
    if not transform_node.IsTransformToWorldLinear():
        raise VolumeError(f"'{node.GetName()}' is under the non-linear (warping) transform "
                          f"'{transform_node.GetName()}'. Harden the transform on the volume (Data module: "
                          "right-click the volume, 'Harden transform') or remove it, then segment again.")
    matrix = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(matrix)
    return matrix_to_array(matrix)


def world_ijk_to_ras(volume_node) -> np.ndarray:
    """World RAS of each voxel: the parent transform composed with the node's IJK-to-RAS matrix."""
    return parent_to_world(volume_node) @ local_ijk_to_ras(volume_node)


def voxel_array(volume_node) -> np.ndarray:
    """The node's voxels as a read-only (K, J, I) view (no copy; the node keeps ownership)."""
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None or image.GetPointData().GetScalars() is None:
        raise VolumeError("The source volume has no voxels: load an image first.")
    if image.GetNumberOfScalarComponents() != 1:
        raise VolumeError(f"'{volume_node.GetName()}' has {image.GetNumberOfScalarComponents()} components per "
                          "voxel; choose a single-component scalar volume (convert colour images to scalar first).")
    dimensions = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dimensions[::-1])
    array.flags.writeable = False
    return array


MODALITIES = ("CT", "MR")


def dicom_modality(volume_node) -> str:
    """The DICOM modality of a volume loaded through Slicer's DICOM module ("" when there is none).

    Slicer's DICOM plugins store it on the volume's subject-hierarchy item, not on the node:
    DICOMLib/DICOMPlugin.py ``addSeriesInSubjectHierarchy`` sets the item attribute
    ``vtkMRMLSubjectHierarchyConstants::GetDICOMSeriesModalityAttributeName()`` ("DICOM.Modality").
    """
    import slicer

    scene = volume_node.GetScene()
    if scene is None:
        return ""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = hierarchy.GetItemByDataNode(volume_node) if hierarchy is not None else 0
    if not item:
        return ""
    name = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMSeriesModalityAttributeName()
    return (hierarchy.GetItemAttribute(item, name) or "").strip().upper()


def guess_modality(volume_node, array: np.ndarray) -> str:
    """CT or MR from the DICOM modality Slicer stores for volumes loaded from DICOM (see :func:`dicom_modality`);
    otherwise CT when air is at about -1000 (Hounsfield units), else OT (the engine then normalises intensities
    per volume, as for MR)."""
    stored = dicom_modality(volume_node)
    if stored in MODALITIES:
        return stored
    if array.dtype.kind in "if" and array.size and float(array.min()) <= -900:
        return "CT"
    return "OT"


def volume_from_node(volume_node, modality: str | None = None) -> Volume:
    """An engine :class:`Volume` with a private, read-only copy of the voxels and the world geometry.

    ``modality`` ("CT" or "MR") overrides the modality read from the node (the user's choice in the module).

    The copy lets the model run on a worker thread while Slicer keeps using the node; the source node is never
    written to.
    """
    if volume_node is None or not volume_node.IsA("vtkMRMLScalarVolumeNode"):
        raise VolumeError("Choose a scalar volume (CT or MRI) as the source volume.")
    if volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise VolumeError(f"'{volume_node.GetName()}' is a labelmap; choose the CT or MRI image as source volume.")
    if modality is not None and modality not in MODALITIES:
        raise VolumeError(f"Unknown modality {modality!r}: choose CT or MR (or automatic).")
    array = voxel_array(volume_node).copy()
    array.flags.writeable = False
    return Volume(array, world_ijk_to_ras(volume_node), modality=modality or guess_modality(volume_node, array),
                  name=volume_node.GetName())


def volume_state_key(volume_node) -> tuple:
    """Changes whenever the voxels or the world geometry of the node change (then a session must be reopened)."""
    image = volume_node.GetImageData()
    return (volume_node.GetID(), image.GetMTime() if image is not None else 0,
            world_ijk_to_ras(volume_node).round(9).tobytes())
