"""Engine masks in and out of segments, on the source volume's voxel grid.

The segmentation node is bound to the source volume: its reference geometry is the volume's grid and it sits
under the same parent transform, so a segment voxel is a volume voxel and an engine mask needs no resampling.
A :class:`medsam3.interaction.session.MaskUpdate` is written as only its changed box (merged inside that extent),
which leaves every other voxel of the segment, and every other segment, as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from medsam3.errors import VolumeError

from .volume_nodes import array_to_matrix, local_ijk_to_ras

if TYPE_CHECKING:  # the session module pulls in the model stack (torch); only its type is needed here
    from medsam3.interaction.session import MaskUpdate

BINARY_LABELMAP = _BINARY_LABELMAP = "Binary labelmap"


def _volume_geometry(volume_node, extent: tuple[int, int, int, int, int, int] | None = None):
    """An empty vtkOrientedImageData with the volume's local geometry and the given IJK extent (default: all)."""
    image = slicer.vtkOrientedImageData()
    image.SetImageToWorldMatrix(array_to_matrix(local_ijk_to_ras(volume_node)))
    image.SetExtent(extent if extent is not None else volume_node.GetImageData().GetExtent())
    return image


def _geometry_string(volume_node) -> str:
    """The volume's grid serialised as Slicer does it: its IJK-to-RAS matrix as it is, then its extent
    (vtkMRMLSegmentationNode::SetReferenceImageGeometryParameterFromVolumeNode and
    vtkSegmentationConverter::SerializeImageGeometry(vtkMatrix4x4*, vtkImageData*) in Slicer's source)."""
    return slicer.vtkSegmentationConverter.SerializeImageGeometry(array_to_matrix(local_ijk_to_ras(volume_node)),
                                                                  volume_node.GetImageData())


GEOMETRY_TOLERANCE_VOXELS = 1e-3  # how far (in voxels) any corner of two "same" grids may be apart


def _parse_geometry(serialized: str) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """(IJK-to-RAS matrix, extent) of a serialised image geometry ("m00;m01;...;m33;e0;...;e5;")."""
    parts = [part for part in serialized.split(";") if part.strip()]
    if len(parts) != 22:
        return None
    try:
        matrix = np.array([float(part) for part in parts[:16]]).reshape(4, 4)
        extent = tuple(int(float(part)) for part in parts[16:])
    except ValueError:
        return None
    return matrix, extent


def same_geometry(first: str, second: str, tolerance_voxels: float = GEOMETRY_TOLERANCE_VOXELS) -> bool:
    """Whether two serialised geometries are the same voxel grid: the same extent, and every corner voxel at the
    same place to within ``tolerance_voxels`` of the smallest spacing.

    Strings are not compared: a geometry that went through vtkOrientedImageData has renormalised directions,
    so with DICOM direction cosines (8 decimals) its last digits often differ from Slicer's own string
    (vtkOrientedImageData::SetImageToWorldMatrix / GetImageToWorldMatrix in Slicer's source).
    """
    parsed = _parse_geometry(first), _parse_geometry(second)
    if parsed[0] is None or parsed[1] is None:
        return first == second
    (matrix_a, extent_a), (matrix_b, extent_b) = parsed
    if extent_a != extent_b:
        return False
    corners = np.array([[i, j, k, 1.0] for i in extent_a[0:2] for j in extent_a[2:4] for k in extent_a[4:6]]).T
    distance = np.linalg.norm((matrix_a - matrix_b)[:3] @ corners, axis=0).max()
    spacing = np.linalg.norm(matrix_a[:3, :3], axis=0).min()
    return bool(distance <= tolerance_voxels * max(spacing, 1e-12))


class SourceRepresentationError(VolumeError):
    """The segmentation keeps its segments as closed surfaces or contours, not voxels (:func:`convert_to_labelmap`)."""


def effective_source(segmentation) -> str:
    """The representation the segments are really kept in. Undo in the Segment Editor after a conversion restores
    the segments' closed surfaces but not the source representation's name (vtkSegmentationHistory::RestoreState
    copies segments only, Slicer's Libs/vtkSegmentationCore/vtkSegmentationHistory.cxx): a binary labelmap source
    that no segment holds, where every segment holds a closed surface, is a closed-surface segmentation."""
    source = segmentation.GetSourceRepresentationName() or ""
    segments = [segmentation.GetNthSegment(n) for n in range(segmentation.GetNumberOfSegments())]
    closed_surface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    if source == _BINARY_LABELMAP and segments and all(
            segment.GetRepresentation(_BINARY_LABELMAP) is None and segment.GetRepresentation(closed_surface)
            is not None for segment in segments):
        return closed_surface
    return source


def _check_source_representation(segmentation_node, volume_node) -> None:
    segmentation = segmentation_node.GetSegmentation()
    source = effective_source(segmentation)
    if segmentation.GetNumberOfSegments() > 0 and source != _BINARY_LABELMAP:
        raise SourceRepresentationError(
            f"The segmentation '{segmentation_node.GetName()}' keeps its segments as {source.lower()} (e.g. from an "
            f"STL, OBJ or RTSTRUCT file) and the model writes voxels: convert it to a binary labelmap on the grid "
            f"of '{volume_node.GetName()}' (the module offers it), or choose a new segmentation.")


def convert_to_labelmap(segmentation_node, volume_node) -> None:
    """Make binary labelmap the source representation, converted on the volume's voxel grid, as the Segment Editor
    does before editing (vtkSlicerSegmentEditorLogic::SetSourceRepresentationToBinaryLabelMap and
    GetReferenceImageGeometryString in Slicer's Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentEditorLogic.cxx;
    asked first in qMRMLSegmentEditorWidget::setSourceRepresentationToBinaryLabelmap): the closed surface is made
    again from the labelmap when the segmentation showed one. Without a reference geometry, Slicer's conversion rule
    would pick a default grid of its own (0.08 mm voxels for a 2 cm sphere). Nothing is changed when Slicer cannot
    convert (e.g. planar contours without SlicerRT's conversion rules)."""
    segmentation = segmentation_node.GetSegmentation()
    named_source = segmentation.GetSourceRepresentationName() or ""
    source = effective_source(segmentation)
    if source == _BINARY_LABELMAP:
        return
    other_transform = segmentation_node.GetTransformNodeID() != volume_node.GetTransformNodeID()
    if segmentation.GetNumberOfSegments() > 0 and other_transform:
        raise VolumeError(f"The segmentation '{segmentation_node.GetName()}' is under another transform than "
                          f"'{volume_node.GetName()}'. Put both under the same transform, then convert it.")
    parameter = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    previous_geometry = segmentation.GetConversionParameter(parameter)
    closed_surface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    had_closed_surface = segmentation.ContainsRepresentation(closed_surface)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    if named_source != source:  # after an undone conversion: convert from what the segments hold
        segmentation.SetSourceRepresentationName(source)
    converted = segmentation.CreateRepresentation(_BINARY_LABELMAP, True)  # again, on this grid, if one exists
    segment_ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    if not converted or any(segmentation.GetSegment(segment_id).GetRepresentation(_BINARY_LABELMAP) is None
                            for segment_id in segment_ids):
        for segment_id in segment_ids:  # derived labelmaps only; the source representation is untouched
            segmentation.GetSegment(segment_id).RemoveRepresentation(_BINARY_LABELMAP)
        segmentation.SetConversionParameter(parameter, previous_geometry)
        if named_source != source:
            segmentation.SetSourceRepresentationName(named_source)
        raise SourceRepresentationError(f"Slicer cannot convert the {source.lower()} of "
                                        f"'{segmentation_node.GetName()}' "
                                        "to a binary labelmap (for RTSTRUCT contours install the SlicerRT extension); "
                                        "nothing was changed: choose a new segmentation.")
    segmentation.SetSourceRepresentationName(_BINARY_LABELMAP)
    if had_closed_surface:
        segmentation.CreateRepresentation(closed_surface)
    display_node = segmentation_node.GetDisplayNode()
    if display_node is not None:
        display_node.SetPreferredDisplayRepresentationName2D(_BINARY_LABELMAP)


def bind_to_volume(segmentation_node, volume_node) -> None:
    """Make the segmentation's labelmap grid the volume's grid and put it under the volume's transform.

    A segmentation that already holds segments on another grid, or under another transform, is not silently
    resampled: the user is asked to choose a new segmentation instead. One whose segments are closed surfaces or
    contours is refused, unchanged (:class:`SourceRepresentationError`; :func:`convert_to_labelmap` converts it).
    """
    _check_source_representation(segmentation_node, volume_node)
    segmentation = segmentation_node.GetSegmentation()
    wanted_geometry = _geometry_string(volume_node)
    current_geometry = segmentation.GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    has_segments = segmentation.GetNumberOfSegments() > 0
    if has_segments and current_geometry and not same_geometry(current_geometry, wanted_geometry):
        raise VolumeError(f"The segmentation '{segmentation_node.GetName()}' was drawn on another voxel grid than "
                          f"'{volume_node.GetName()}'. Choose a new segmentation for this volume.")
    if has_segments and segmentation_node.GetTransformNodeID() != volume_node.GetTransformNodeID():
        raise VolumeError(f"The segmentation '{segmentation_node.GetName()}' is under another transform than "
                          f"'{volume_node.GetName()}'. Put both under the same transform, or choose a new segmentation.")
    segmentation_node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    if not segmentation.GetSourceRepresentationName() == _BINARY_LABELMAP:  # no segments: nothing to convert
        segmentation.SetSourceRepresentationName(_BINARY_LABELMAP)


def apply_update(update: MaskUpdate, segmentation_node, segment_id: str, volume_node) -> None:
    """Write the changed box of an engine mask into a segment (nothing outside the box is touched)."""
    if update.is_empty:
        return
    segmentation = segmentation_node.GetSegmentation()
    if len(segmentation.GetSegmentIDsForLayer(segmentation.GetLayerIndex(segment_id))) > 1:
        # Merging a binary box into a segment that shares its labelmap layer writes the layer's first label
        # (another segment's voxels); a layer of its own makes the merge exact.
        segmentation.SeparateSegmentLabelmap(segment_id)
    k0, k1, j0, j1, i0, i1 = update.box
    box = _volume_geometry(volume_node, (i0, i1 - 1, j0, j1 - 1, k0, k1 - 1))
    box.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    scalars = numpy_support.vtk_to_numpy(box.GetPointData().GetScalars())
    scalars[:] = np.ascontiguousarray(update.values, dtype=np.uint8).reshape(-1)
    box.Modified()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    # Slicer's MODE_REPLACE clears the segment outside the extent too; maximum then minimum inside the extent
    # sets exactly the box: the first adds the box's set voxels, the second removes its cleared ones.
    for mode, needed in ((logic.MODE_MERGE_MAX, update.values.any()), (logic.MODE_MERGE_MIN, not update.values.all())):
        if needed and not logic.SetBinaryLabelmapToSegment(box, segmentation_node, segment_id, mode, box.GetExtent()):
            raise RuntimeError(f"Slicer refused to write into segment {segment_id!r} of "
                               f"'{segmentation_node.GetName()}'.")


def segment_mask(segmentation_node, segment_id: str, volume_node) -> np.ndarray:
    """A segment's voxels as a (K, J, I) bool array on the volume's grid."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise VolumeError(f"There is no segment {segment_id!r} in '{segmentation_node.GetName()}'.")
    shape = volume_node.GetImageData().GetDimensions()[::-1]
    labelmap = slicer.vtkOrientedImageData()
    if not segmentation_node.GetBinaryLabelmapRepresentation(segment_id, labelmap) or \
            labelmap.GetPointData().GetScalars() is None:
        return np.zeros(shape, dtype=bool)
    reference = _volume_geometry(volume_node)
    on_grid = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(labelmap, reference, on_grid)
    if on_grid.GetPointData().GetScalars() is None:
        return np.zeros(shape, dtype=bool)
    values = numpy_support.vtk_to_numpy(on_grid.GetPointData().GetScalars())
    return values.reshape(on_grid.GetDimensions()[::-1]) > 0


def labelmap_modified_time(segmentation_node, segment_id: str) -> int:
    """A counter that changes whenever the segment's voxels change (0 when it has no labelmap yet)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation(_BINARY_LABELMAP) if segment is not None else None
    return int(labelmap.GetMTime()) if labelmap is not None else 0
