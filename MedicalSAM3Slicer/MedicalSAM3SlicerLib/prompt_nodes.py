"""Markups and slice views as engine prompts in the source volume's voxel grid.

Positions are read in world RAS (``GetNthControlPointPositionWorld`` applies every parent transform of the
markups node, linear or not) and mapped to continuous voxel coordinates with the volume's world geometry (see
:mod:`volume_nodes`). Nothing is rounded here: the engine decides which slice a prompt is on.

Positive and negative clicks are two separate point lists (as the MONAI Label client does): every control point
of the ``positive_points`` list adds, every point of the ``negative_points`` list removes. A list can carry the
attribute ``MedicalSAM3.Polarity`` = ``negative`` to mark itself negative when passed alone.
"""

from __future__ import annotations

import numpy as np
import vtk

from medsam3.errors import PromptError
from medsam3.interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt
from medsam3.geometry.slicing import SliceAxis, SliceGeometry
from medsam3.geometry.volume import Volume

from .volume_nodes import matrix_to_array

POLARITY_ATTRIBUTE = "MedicalSAM3.Polarity"
PROMPT_KIND_ATTRIBUTE = "MedicalSAM3.PromptKind"  # "positive", "negative" or "box": the module's own prompt nodes


def control_points_world(markups_node) -> np.ndarray:
    """World RAS of the placed control points of a markups node, shape (N, 3)."""
    points = []
    for index in range(markups_node.GetNumberOfControlPoints()):
        if markups_node.GetNthControlPointPositionStatus(index) != markups_node.PositionDefined:
            continue
        position = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(index, position)
        points.append(position)
    return np.asarray(points, dtype=np.float64).reshape(-1, 3)


def is_negative_list(markups_node) -> bool:
    return (markups_node.GetAttribute(POLARITY_ATTRIBUTE) or "").lower() == "negative"


def point_prompts(volume: Volume, positive_points=None, negative_points=None) -> tuple[PointPrompt, ...]:
    """Every placed control point as a click at its voxel position; polarity from the list it is in."""
    prompts = []
    for node, positive in ((positive_points, True), (negative_points, False)):
        if node is None:
            continue
        polarity = positive and not is_negative_list(node)
        for ijk in volume.ras_to_ijk_points(control_points_world(node)):
            prompts.append(PointPrompt(tuple(float(v) for v in ijk), positive=polarity))
    return tuple(prompts)


def roi_corners_world(roi_node) -> np.ndarray:
    """The eight corners of an ROI box in world RAS, shape (8, 3)."""
    radius = np.asarray(roi_node.GetSize(), dtype=np.float64) / 2.0
    object_to_node = matrix_to_array(roi_node.GetObjectToNodeMatrix())
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    local = signs * radius
    corners_node = (np.c_[local, np.ones(8)] @ object_to_node.T)[:, :3]
    transform_node = roi_node.GetParentTransformNode()
    if transform_node is None:
        return corners_node
    to_world = vtk.vtkGeneralTransform()
    transform_node.GetTransformToWorld(to_world)
    return np.asarray([to_world.TransformPoint(list(corner)) for corner in corners_node])


def box_prompt(volume: Volume, roi_node, axis: SliceAxis | str) -> BoxPrompt:
    """An ROI (drawn on a slice view, flat or not) as a box on one slice of ``axis``.

    The box covers the voxels whose centres lie inside the ROI; its slice is the one through the ROI's centre.
    """
    geometry = SliceGeometry.for_volume(volume, axis)
    ijk = volume.ras_to_ijk_points(roi_corners_world(roi_node))
    low, high = np.ceil(ijk.min(axis=0) - 1e-6), np.floor(ijk.max(axis=0) + 1e-6)
    limits = np.asarray(volume.shape_ijk) - 1
    low, high = np.clip(low, 0, limits), np.clip(high, 0, limits)
    centre = ijk.mean(axis=0)
    low[geometry.normal_axis] = high[geometry.normal_axis] = float(np.round(centre[geometry.normal_axis]))
    if np.any(high < low):
        raise PromptError("The box does not overlap the volume: draw it on the image.")
    return BoxPrompt(tuple(float(v) for v in low), tuple(float(v) for v in high))


def slice_prompt(volume: Volume, axis: SliceAxis | str, positive_points=None, negative_points=None,
                 roi_node=None) -> SlicePrompt:
    """Points and/or a box placed on one slice of one view, as one engine prompt."""
    points = point_prompts(volume, positive_points, negative_points)
    box = box_prompt(volume, roi_node, axis) if roi_node is not None else None
    if not points and box is None:
        raise PromptError("There is no point and no box to segment from: click on the object or draw a box.")
    return SlicePrompt(SliceAxis.parse(axis), points=points, box=box)


def slice_normal_world(slice_node) -> np.ndarray:
    """The unit normal of a slice view's plane in world RAS."""
    slice_to_ras = matrix_to_array(slice_node.GetSliceToRAS())
    normal = slice_to_ras[:3, 2]
    return normal / np.linalg.norm(normal)


def axis_from_slice_node(volume: Volume, slice_node) -> SliceAxis:
    """The engine view whose slices are the voxel planes closest to the slice view's plane.

    The voxel axis most aligned with the view's normal (in the volume's world frame) is the slice axis; the
    engine view (axial, coronal, sagittal) that cuts along that voxel axis is the answer. A view rotated to the
    volume's planes, or a volume stored obliquely, thus still gets the slices the user is looking at.
    """
    alignment = np.abs(volume.directions.T @ slice_normal_world(slice_node))
    normal_ijk_axis = int(np.argmax(alignment))
    for axis in SliceAxis:
        if SliceGeometry.for_volume(volume, axis).normal_axis == normal_ijk_axis:
            return axis
    raise PromptError("The slice view's orientation matches no axial, coronal or sagittal plane of the volume.")


def slice_index_from_slice_node(volume: Volume, slice_node, axis: SliceAxis | str) -> int:
    """The voxel slice of ``axis`` that the slice view currently shows (through the view's centre)."""
    centre = matrix_to_array(slice_node.GetSliceToRAS())[:3, 3]
    geometry = SliceGeometry.for_volume(volume, axis)
    index = int(np.round(volume.ras_to_ijk_points(centre)[0][geometry.normal_axis]))
    return geometry.check_slice_index(index)


def slice_node_showing(point_world, slice_nodes):
    """The slice view whose plane passes closest to a world point (the view a click was placed in), or None.

    Markups record positions, not views; a click placed in a view lies on that view's plane, so the nearest
    plane identifies it (the first listed view wins a tie, e.g. at the crossing of two planes).
    """
    best, best_distance = None, np.inf
    for slice_node in slice_nodes:
        slice_to_ras = matrix_to_array(slice_node.GetSliceToRAS())
        distance = abs(float(slice_normal_world(slice_node) @ (np.asarray(point_world) - slice_to_ras[:3, 3])))
        if distance < best_distance - 1e-6:
            best, best_distance = slice_node, distance
    return best


def volume_ids_shown(slice_node) -> list[str]:
    """The IDs of the volumes a slice view shows: its background, and its foreground when that is not transparent.

    A view's layers live on its slice composite node, the one with the slice node's layout name (as
    vtkMRMLSliceLogic::GetSliceCompositeNode(vtkMRMLSliceNode*) finds it, Slicer's
    Libs/MRML/Logic/vtkMRMLSliceLogic.cxx).
    """
    scene = slice_node.GetScene() if hasattr(slice_node, "GetScene") else None
    layout_name = slice_node.GetLayoutName() if scene is not None else None
    if not layout_name:
        return []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if composite.GetLayoutName() == layout_name:
            shown = [composite.GetBackgroundVolumeID()]
            if composite.GetForegroundOpacity() > 0:
                shown.append(composite.GetForegroundVolumeID())
            return [volume_id for volume_id in shown if volume_id]
    return []


def check_view_shows(volume_node, slice_node) -> None:
    """Refuse (one line naming both volumes) a prompt placed in a view that shows another volume than the source
    volume: its position was judged on the image the user saw, which is not the one the model would segment."""
    shown = volume_ids_shown(slice_node)
    if not shown or volume_node.GetID() in shown:
        return
    other = volume_node.GetScene().GetNodeByID(shown[0])
    other_name = other.GetName() if other is not None else shown[0]
    raise PromptError(f"The {slice_node.GetLayoutName()} view shows '{other_name}', but the source volume is "
                      f"'{volume_node.GetName()}': choose '{other_name}' as the source volume (with a segmentation "
                      f"for it), or show '{volume_node.GetName()}' in that view, then prompt again.")


def prompt_node(scene, kind: str, current=None):
    """The point list ("positive" / "negative") or ROI ("box") the module keeps clicks and boxes in, one per scene.

    It is never saved with the scene (SetSaveWithScene(False) on it and its display node): prompts are momentary,
    and a saved scene would bring back stale clicks next to the module's own new nodes. A node a scene saved by an
    earlier version still holds is adopted, emptied of its stale prompts, and no longer saved.
    """
    if kind not in ("positive", "negative", "box"):
        raise ValueError(f"Unknown prompt node kind {kind!r}.")
    if current is not None and current.GetScene() is scene:
        return current
    node_class = "vtkMRMLMarkupsROINode" if kind == "box" else "vtkMRMLMarkupsFiducialNode"
    name = f"MedicalSAM3 {kind}"
    node = None
    for index in range(scene.GetNumberOfNodesByClass(node_class)):
        candidate = scene.GetNthNodeByClass(index, node_class)
        if candidate.GetAttribute(PROMPT_KIND_ATTRIBUTE) == kind or (
                candidate.GetName() == name and candidate.GetAttribute(POLARITY_ATTRIBUTE) is not None):
            node = candidate
            node.RemoveAllControlPoints()  # stale: placed in an earlier session
            break
    if node is None:
        node = scene.AddNewNodeByClass(node_class, name)
        if kind == "box":  # the box is the bounding box of its two corners (the default ROI type is centred)
            node.SetROIType(node.ROITypeBoundingBox)
        node.CreateDefaultDisplayNodes()
    node.SetAttribute(PROMPT_KIND_ATTRIBUTE, kind)
    node.SetAttribute(POLARITY_ATTRIBUTE, "negative" if kind == "negative" else "positive")
    node.SetSaveWithScene(False)
    display = node.GetDisplayNode()
    if display is not None:
        display.SetSaveWithScene(False)
        display.SetSelectedColor((0.1, 0.8, 0.1) if kind != "negative" else (0.9, 0.1, 0.1))
        display.SetPointLabelsVisibility(False)
    node.SetLocked(True)  # placed by the tools only; a later click must not drag it
    return node
