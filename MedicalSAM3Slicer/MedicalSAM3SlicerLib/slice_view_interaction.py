"""Mouse gestures on slice views as prompts: clicks, box drags, scribbles and lassos (no Qt, no markups place mode).

The widget's Qt event filter turns each mouse event of a slice view into a :class:`MouseEvent` (VTK display
coordinates: device pixels, origin at the bottom left, the frame of the slice node's ``XYToRAS`` matrix) and hands
it to a :class:`GestureRecorder`, which decides whether the event is consumed and, on release, what the gesture
was. Only the left button is ever consumed, so right-drag zoom, middle-drag pan and the wheel keep working; each
press-release of the left button is one click (a double click is two clicks).

Strokes are turned into engine prompts on the source volume's voxel grid:

- a **lasso** becomes a mask on one voxel slice: the voxels whose centres, seen along the view's normal, fall
  inside the drawn polygon (:func:`lasso_slice_mask`);
- a **scribble** becomes points spaced along the stroke (:func:`scribble_points`). A scribble is a thin line, not
  the object's outline: as a mask it would tell the tracker "the object is this line" (SAM's mask input stands
  for a whole previous answer, and the video tracker takes a mask prompt as the slice's answer). As points, each
  says "this pixel is object" (or background), which is what the user drew. See ``docs/slicer.md``.

The voxel slice of a stroke is the one its points are closest to, on the voxel axis most aligned with the view's
normal (as for clicks, :func:`prompt_nodes.axis_from_slice_node`). Points are projected along the view's normal
onto that voxel plane, so on a view that is not parallel to the volume's planes the prompt covers what the user
sees outlined on the screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from medsam3.errors import PromptError
from medsam3.interaction.prompts import PointPrompt
from medsam3.geometry.slicing import SliceAxis, SliceGeometry
from medsam3.geometry.volume import Volume

from .prompt_nodes import axis_from_slice_node, slice_normal_world
from .volume_nodes import array_to_matrix, matrix_to_array

CLICK_TOLERANCE_PX = 4.0  # a press and release closer than this (device pixels) is a click, not a drag
STROKE_STEP_PX = 2.0  # stroke points closer than this to the previous one are skipped
MAX_SCRIBBLE_POINTS = 8  # a scribble adds at most this many points (as many as a few rounds of corrections)
SCRIBBLE_POINT_GAP_VOXELS = 3.0  # points along a scribble are at least this far apart (in slice voxels)


class Tool(str, Enum):
    POINT = "point"
    BOX = "box"
    SCRIBBLE = "scribble"
    LASSO = "lasso"


@dataclass(frozen=True)
class MouseEvent:
    """One mouse event of a slice view. ``kind``: press, move, release or double_click; ``button``: the button
    that changed (left, right, middle, or None for a move); ``left_held``: the left button is down;
    ``xy``: VTK display coordinates of the slice view; ``view``: which view (any hashable, e.g. its name)."""

    kind: str
    button: str | None
    left_held: bool
    xy: tuple[float, float]
    view: object = None


@dataclass(frozen=True)
class Gesture:
    """A finished gesture: a click (one point), a box (two corners) or a stroke (its points), in display XY."""

    tool: Tool
    positive: bool
    view: object
    display_points: np.ndarray = field(compare=False)
    is_click: bool = False


class GestureRecorder:
    """Press / move / release of the left button on one slice view, classified for the active tool.

    - point: a click places one point (a drag places nothing: it was not aimed);
    - box: a drag gives the box between the press and the release (a click gives nothing);
    - scribble: a drag gives the stroke, a click a one-point stroke;
    - lasso: a drag of at least three points gives the closed outline.
    A right- or middle-button press during a left drag cancels the gesture; that button's release is consumed too,
    or the view would take the unmoved release for a click of its own and open its context menu
    (``vtkMRMLAbstractWidget::ProcessButtonClickEvent`` turns it into ``RightButtonClickEvent``, which
    ``vtkMRMLSliceIntersectionWidget`` translates to ``WidgetEventMenu``; Slicer ``Libs/MRML/DisplayableManager``,
    v5.10.0).
    """

    def __init__(self, click_tolerance_px: float = CLICK_TOLERANCE_PX, step_px: float = STROKE_STEP_PX):
        self.tool: Tool | None = None
        self.positive = True
        self.click_tolerance_px = click_tolerance_px
        self.step_px = step_px
        self._points: list[tuple[float, float]] | None = None
        self._view = None
        self._moved = 0.0
        self._swallow_release: str | None = None  # the button whose press cancelled a gesture

    def set_tool(self, tool: Tool | str | None, positive: bool = True) -> None:
        self.cancel()
        self._swallow_release = None
        self.tool = Tool(tool) if tool is not None else None
        self.positive = bool(positive)

    @property
    def drawing(self) -> bool:
        return self._points is not None

    @property
    def current_points(self) -> np.ndarray:
        """The points of the gesture in progress (for the live outline), shape (N, 2)."""
        return np.asarray(self._points or [], dtype=np.float64).reshape(-1, 2)

    def cancel(self) -> None:
        self._points, self._view, self._moved = None, None, 0.0

    def handle(self, event: MouseEvent) -> tuple[bool, Gesture | None]:
        """(whether the view must not see this event, the gesture it finished or None)."""
        if self.tool is None:
            return False, None
        if event.button in ("right", "middle"):
            if event.kind == "press" and self.drawing:
                self.cancel()
                self._swallow_release = event.button
                return True, None
            if event.kind == "release" and event.button == self._swallow_release:
                self._swallow_release = None
                return True, None
            return False, None
        xy = (float(event.xy[0]), float(event.xy[1]))
        if event.kind in ("press", "double_click") and event.button == "left":
            self._points, self._view, self._moved = [xy], event.view, 0.0
            return True, None
        if event.kind == "move":
            if not (self.drawing and event.left_held):
                return False, None  # hovering: the view's own cursor and crosshair keep working
            self._add(xy)
            return True, None
        if event.kind == "release" and event.button == "left":
            if not self.drawing:
                return True, None
            self._add(xy, force=True)
            gesture = self._finish()
            self.cancel()
            return True, gesture
        return False, None

    def _add(self, xy, force: bool = False) -> None:
        first, last = self._points[0], self._points[-1]
        self._moved = max(self._moved, float(np.hypot(xy[0] - first[0], xy[1] - first[1])))
        step = float(np.hypot(xy[0] - last[0], xy[1] - last[1]))
        if step >= self.step_px or (force and step > 0):
            self._points.append(xy)

    def _finish(self) -> Gesture | None:
        points = np.asarray(self._points, dtype=np.float64)
        is_click = self._moved < self.click_tolerance_px
        make = lambda pts, click: Gesture(self.tool, self.positive, self._view, pts, click)  # noqa: E731
        if self.tool == Tool.POINT:
            return make(points[:1], True) if is_click else None
        if self.tool == Tool.BOX:
            return None if is_click else make(points[[0, -1]], False)
        if self.tool == Tool.SCRIBBLE:
            return make(points[:1], True) if is_click else make(points, False)
        if self.tool == Tool.LASSO and not is_click and len(points) >= 3:
            return make(points, False)
        return None


# --- coordinates -------------------------------------------------------------------------------------------
DEVICE_PIXEL_RATIO_TOLERANCE = 1e-5  # QVTKInteractorAdapter's, when it truncates scaled positions


def qt_to_display(x: float, y: float, view_height: float, device_pixel_ratio: float = 1.0) -> tuple[float, float]:
    """A Qt mouse position (logical pixels, origin top left) as VTK display coordinates (device pixels, origin
    bottom left), the frame of the slice node's XYToRAS matrix: the very pixel the view's own interactor gets.

    VTK's QVTKInteractorAdapter::ProcessEvent (GUISupport/Qt) truncates ``x * ratio + 1e-5`` and
    ``y * ratio + 1e-5`` to whole device pixels and hands them to
    ``vtkRenderWindowInteractor::SetEventInformationFlipY``, which flips with ``height - y - 1`` (the window's height
    in device pixels, itself truncated the same way by ``SetDevicePixelRatio``): the bottom row is 0, the top row
    ``height - 1``."""
    tolerance = DEVICE_PIXEL_RATIO_TOLERANCE
    height = int(view_height * device_pixel_ratio + tolerance)
    return (float(int(x * device_pixel_ratio + tolerance)),
            float(height - int(y * device_pixel_ratio + tolerance) - 1))


def pane_relative(display_xy: tuple[float, float], window_size,
                  viewports=((0.0, 0.0, 1.0, 1.0),)) -> tuple[float, float]:
    """A display position relative to the pane (renderer viewport) under it, as the slice view's own interaction
    uses it with XYToRAS: ``vtkMRMLSliceViewInteractorStyle::DelegateInteractionEventToDisplayableManagers``
    subtracts the origin of ``FindPokedRenderer``'s renderer (Libs/MRML/DisplayableManager, v5.10.0), the last one
    whose viewport holds the point, its origin ``int(viewport * size + 0.5)`` (``vtkViewport::GetOrigin``).
    Slicer 5.10 removed the lightbox layout (``vtkMRMLSliceNode::SetLayoutGridRows``: "LightBox support has been
    removed"), so a slice view's renderers share one full pane; a view with several panes gets each its own XY."""
    x, y = float(display_xy[0]), float(display_xy[1])
    width, height = window_size
    for x0, y0, x1, y1 in reversed([tuple(v) for v in viewports]):
        if x0 * width <= x <= x1 * width and y0 * height <= y <= y1 * height:
            return x - int(x0 * width + 0.5), y - int(y0 * height + 0.5)
    return x, y


# --- the interaction node: one thing at a time on a left click ---------------------------------------------
def leave_place_mode(interaction_node) -> bool:
    """Arming a prompt tool ends a markups placement in progress, so that one click is not both a prompt and a new
    markup: as the Segment Editor does when an effect is activated (qMRMLSegmentEditorWidget::setActiveEffect,
    "Deactivate markup/ruler/ROI placement", v5.10.0). The place-mode persistence is left as the user set it.
    Returns whether a placement was ended."""
    if interaction_node is None:
        return False
    view_transform = interaction_node.ViewTransform
    if interaction_node.GetCurrentInteractionMode() == view_transform:
        return False
    interaction_node.SetCurrentInteractionMode(view_transform)
    return True


def tool_must_yield(interaction_node) -> bool:
    """The user switched to markups placement (or another mouse mode) while a prompt tool is armed: the tool is
    released, as a Segment Editor effect is (qSlicerSegmentEditorAbstractEffect::interactionNodeModified)."""
    return interaction_node is not None and \
        interaction_node.GetCurrentInteractionMode() != interaction_node.ViewTransform


def display_to_world(slice_node, display_points) -> np.ndarray:
    """World RAS of slice-view display points (on the view's plane), shape (N, 3)."""
    xy = np.asarray(display_points, dtype=np.float64).reshape(-1, 2)
    xy_to_ras = matrix_to_array(slice_node.GetXYToRAS())
    homogeneous = np.c_[xy, np.zeros(len(xy)), np.ones(len(xy))]
    return (homogeneous @ xy_to_ras.T)[:, :3]


def world_to_display(slice_node, world_points) -> np.ndarray:
    """Display XY and the distance-like Z off the view's plane of world RAS points, shape (N, 3)."""
    ras = np.asarray(world_points, dtype=np.float64).reshape(-1, 3)
    ras_to_xy = np.linalg.inv(matrix_to_array(slice_node.GetXYToRAS()))
    return (np.c_[ras, np.ones(len(ras))] @ ras_to_xy.T)[:, :3]


def view_aligned_roi_axes(slice_node) -> np.ndarray:
    """The ObjectToNode matrix that aligns a bounding-box ROI with a slice view (its x, y and normal axes).

    A box dragged on a view is a rectangle on the screen; a bounding-box ROI spans its control points along its
    own axes (``vtkMRMLMarkupsROINode::UpdateBoundingBoxROIFromControlPoints``), world axes by default, which on
    a rotated view would make the box larger than what was drawn.
    """
    xy_to_ras = matrix_to_array(slice_node.GetXYToRAS())
    axes = xy_to_ras[:3, :3] / np.linalg.norm(xy_to_ras[:3, :3], axis=0)
    matrix = np.eye(4)
    matrix[:3, :3] = axes if np.linalg.det(axes) > 0 else axes * [1.0, 1.0, -1.0]  # a proper rotation
    return matrix


def keep_box(roi_node, slice_node, display_corners) -> None:
    """Make a bounding-box ROI the box dragged between two display points of a slice view: its axes those of the
    view (:func:`view_aligned_roi_axes`), its control points the two corners on the view's plane."""
    roi_node.RemoveAllControlPoints()
    roi_node.SetAndObserveObjectToNodeMatrix(array_to_matrix(view_aligned_roi_axes(slice_node)))
    for corner in display_to_world(slice_node, display_corners):
        roi_node.AddControlPointWorld(*[float(v) for v in corner])


def _stroke_on_voxel_slice(volume: Volume, slice_node, world_points) -> tuple[SliceGeometry, int, np.ndarray]:
    """The view's engine axis, the voxel slice the stroke is on, and the stroke projected along the view's
    normal onto that slice's plane, in continuous (slice, row, column) coordinates."""
    axis = axis_from_slice_node(volume, slice_node)
    geometry = SliceGeometry.for_volume(volume, axis)
    ijk = volume.ras_to_ijk_points(np.asarray(world_points, dtype=np.float64).reshape(-1, 3))
    normal_ijk = volume.ras_to_ijk[:3, :3] @ slice_normal_world(slice_node)
    along = normal_ijk[geometry.normal_axis]
    index = int(np.round(np.mean(ijk[:, geometry.normal_axis])))
    if not 0 <= index < geometry.slice_count:
        raise PromptError("The stroke was drawn off the volume: draw it on the image.")
    shift = (index - ijk[:, geometry.normal_axis]) / along
    projected = ijk + shift[:, None] * normal_ijk[None, :]
    return geometry, index, geometry.ijk_to_slice(projected)


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which (N, 2) points lie inside the closed (M, 2) polygon."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    x0, y0 = polygon[:, 0][None, :], polygon[:, 1][None, :]
    x1, y1 = np.roll(polygon[:, 0], -1)[None, :], np.roll(polygon[:, 1], -1)[None, :]
    straddles = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return np.count_nonzero(straddles & (x < crossing_x), axis=1) % 2 == 1


def lasso_slice_mask(volume: Volume, slice_node, world_points) -> tuple[SliceAxis, int, np.ndarray]:
    """A lasso drawn on a slice view as (engine axis, voxel slice index, (rows, columns) bool mask).

    The mask holds the voxels of that slice whose centres, seen along the view's normal, lie inside the closed
    outline; it is on the engine's slice grid (``SliceGeometry.image_shape``), flips and obliquity included.
    """
    geometry, index, src = _stroke_on_voxel_slice(volume, slice_node, world_points)
    polygon = src[:, 1:]  # (row, column)
    if len(polygon) < 3:
        raise PromptError("A lasso needs an outline: drag around the region.")
    rows, columns = geometry.image_shape
    low = np.clip(np.floor(polygon.min(axis=0)).astype(int), 0, [rows - 1, columns - 1])
    high = np.clip(np.ceil(polygon.max(axis=0)).astype(int), 0, [rows - 1, columns - 1])
    mask = np.zeros((rows, columns), dtype=bool)
    grid = np.mgrid[low[0]:high[0] + 1, low[1]:high[1] + 1].reshape(2, -1).T.astype(np.float64)
    inside = _inside_polygon(grid, polygon)
    mask[grid[inside, 0].astype(int), grid[inside, 1].astype(int)] = True
    if not mask.any():
        raise PromptError("The lasso encloses no voxel of the volume: draw it around the region on the image.")
    return geometry.axis, index, mask


def scribble_points(volume: Volume, slice_node, world_points, positive: bool = True,
                    max_points: int = MAX_SCRIBBLE_POINTS,
                    gap_voxels: float = SCRIBBLE_POINT_GAP_VOXELS) -> tuple[SliceAxis, int, tuple[PointPrompt, ...]]:
    """A scribble as (engine axis, voxel slice index, points spaced evenly along the stroke on that slice).

    Both ends are kept; between them the points are at least ``gap_voxels`` apart (in slice voxels) and at most
    ``max_points`` in all. The parts of the stroke off the volume are left out.
    """
    geometry, index, src = _stroke_on_voxel_slice(volume, slice_node, world_points)
    rows, columns = geometry.image_shape
    inside = (src[:, 1] >= -0.5) & (src[:, 1] < rows - 0.5) & (src[:, 2] >= -0.5) & (src[:, 2] < columns - 0.5)
    stroke = src[inside, 1:]
    if not len(stroke):
        raise PromptError("The scribble was drawn off the volume: draw it on the image.")
    stroke = stroke[np.r_[True, np.linalg.norm(np.diff(stroke, axis=0), axis=1) > 1e-9]]  # no repeated points
    lengths = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(stroke, axis=0), axis=1))]
    count = int(np.clip(np.floor(lengths[-1] / gap_voxels) + 1, 1, max_points))
    at = np.linspace(0.0, lengths[-1], count) if count > 1 else np.array([0.0])
    sampled = np.stack([np.interp(at, lengths, stroke[:, 0]), np.interp(at, lengths, stroke[:, 1])], axis=1)
    ijk = geometry.slice_to_ijk(np.c_[np.full(len(sampled), float(index)), sampled])
    points = tuple(PointPrompt(tuple(float(v) for v in p), positive=bool(positive)) for p in ijk)
    return geometry.axis, index, points
