"""Mouse gestures on slice views become prompts at the right voxels: clicks stay clicks, zoom and pan are never
taken, a lasso drawn on an oblique or flipped volume becomes a mask on the voxels inside it, a scribble's points
lie on the stroke; end to end, a lasso or scribble segments the object it was drawn on, not its neighbour."""

from __future__ import annotations

import numpy as np
import pytest

from slicer_scene import load_volume_node, new_scene, world_of_voxel

from medsam3.errors import PromptError
from medsam3.geometry.slicing import SliceGeometry
from medsam3.geometry.volume import Volume

from MedicalSAM3SlicerLib.segment_io import segment_mask
from MedicalSAM3SlicerLib.slice_view_interaction import (GestureRecorder, MouseEvent, Tool, display_to_world,
                                                         lasso_slice_mask, qt_to_display, scribble_points)
from MedicalSAM3SlicerLib.volume_nodes import matrix_to_array

from oracle import ground_truth_volume
from slicer_oracle import oracle_logic

SHAPE_KJI = (24, 44, 52)


def _rotation(axis, degrees):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _ijk_to_ras(storage: str) -> np.ndarray:
    spacing = np.diag([0.9, 1.1, 2.5])
    directions = {"flipped": np.diag([-1.0, -1.0, 1.0]) @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]),
                  "oblique": _rotation([0.4, -0.3, 1.0], 28.0) @ np.diag([1.0, -1.0, 1.0])}[storage]
    matrix = np.eye(4)
    matrix[:3, :3] = directions @ spacing
    matrix[:3, 3] = [-20.0, 15.0, 7.0]
    return matrix


BLOB_A_IJK, BLOB_B_IJK, BLOB_RADIUS_MM = (14, 22, 12), (38, 22, 12), 5.0  # 21.6 mm apart


def _two_blobs(ijk_to_ras):
    """Two bright balls side by side on one voxel row (so one voxel slice shows both)."""
    kji = np.indices(SHAPE_KJI).reshape(3, -1)
    world = (ijk_to_ras @ np.r_[kji[::-1], np.ones((1, kji.shape[1]))])[:3].T

    def ball(centre_ijk):
        centre = (ijk_to_ras @ np.r_[centre_ijk, 1.0])[:3]
        return (np.linalg.norm(world - centre, axis=1) <= BLOB_RADIUS_MM).reshape(SHAPE_KJI)

    return ball(BLOB_A_IJK), ball(BLOB_B_IJK)


def _slice_node(scene, volume_node, centre_ijk, orientation: str, rotated_to_volume: bool):
    node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    node.SetLayoutName("Red")
    getattr(node, f"SetOrientationTo{orientation}")()
    node.SetDimensions(400, 300, 1)
    node.SetFieldOfView(100.0, 75.0, 1.0)
    if rotated_to_volume:
        node.RotateToVolumePlane(volume_node)
    node.JumpSliceByCentering(*[float(v) for v in world_of_voxel(volume_node, centre_ijk)])
    node.UpdateMatrices()
    return node


def _display_of(slice_node, world):
    """Display XY of a world point, from the slice node's own matrix (VTK's inverse, not the module's)."""
    import vtk

    ras_to_xy = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Invert(slice_node.GetXYToRAS(), ras_to_xy)
    return np.asarray(ras_to_xy.MultiplyPoint([*map(float, world), 1.0])[:2])


def _circle(centre_xy, radius_px, vertices=72):
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    return np.c_[centre_xy[0] + radius_px * np.cos(angles), centre_xy[1] + radius_px * np.sin(angles)]


def _blob_scene(storage, directory):
    blob_a, blob_b = _two_blobs(_ijk_to_ras(storage))
    scene = new_scene()
    reference = Volume(np.zeros(SHAPE_KJI, dtype=np.int16), _ijk_to_ras(storage))
    node = load_volume_node(scene, ground_truth_volume(reference, blob_a | blob_b), directory)
    return scene, node, blob_a, blob_b


@pytest.fixture(params=["flipped", "oblique"])
def blob_scene(request, tmp_path):
    return _blob_scene(request.param, tmp_path)


# --- gestures --------------------------------------------------------------------------------------------------
def _press(xy, button="left"):
    return MouseEvent("press", button, button == "left", xy, "Red")


def _move(xy, left_held=True):
    return MouseEvent("move", None, left_held, xy, "Red")


def _release(xy, button="left"):
    return MouseEvent("release", button, False, xy, "Red")


def test_each_click_is_one_click_and_right_drag_zoom_is_left_to_the_view():
    recorder = GestureRecorder()
    recorder.set_tool(Tool.POINT, positive=False)
    clicks = []
    # two quick clicks (Qt sends press, release, double-click, release) and a click with a 2-pixel jitter
    for event in (_press((10, 10)), _release((10, 10)), MouseEvent("double_click", "left", True, (10, 10), "Red"),
                  _release((10, 10)), _press((50, 60)), _move((51, 61)), _release((52, 61))):
        consumed, gesture = recorder.handle(event)
        assert consumed  # the view never sees the left button: no window/level drag, no markups placement
        if gesture is not None:
            clicks.append(gesture)
    assert [tuple(g.display_points[0]) for g in clicks] == [(10, 10), (10, 10), (50, 60)]
    assert all(g.is_click and not g.positive for g in clicks)
    # right-drag zoom, middle-drag pan and hovering reach the view untouched
    for event in (_press((5, 5), "right"), _move((5, 40), left_held=False), _release((5, 40), "right"),
                  _press((5, 5), "middle"), _release((9, 9), "middle"), _move((30, 30), left_held=False)):
        assert recorder.handle(event) == (False, None)
    # a drag with the point tool was not aimed: it places nothing
    recorder.handle(_press((0, 0)))
    recorder.handle(_move((30, 0)))
    assert recorder.handle(_release((30, 0))) == (True, None)


def test_drags_become_boxes_strokes_and_lassos_and_right_click_cancels_a_stroke():
    recorder = GestureRecorder()
    path = [(10.0, 10.0), (40.0, 12.0), (60.0, 40.0), (20.0, 50.0)]

    def drag(points):
        recorder.handle(_press(points[0]))
        for xy in points[1:]:
            recorder.handle(_move(xy))
        return recorder.handle(_release(points[-1]))[1]

    recorder.set_tool(Tool.BOX)
    box = drag(path)
    np.testing.assert_array_equal(box.display_points, [path[0], path[-1]])
    recorder.set_tool(Tool.LASSO)
    np.testing.assert_array_equal(drag(path).display_points, path)
    recorder.set_tool(Tool.SCRIBBLE, positive=False)
    scribble = drag(path)
    assert not scribble.positive and not scribble.is_click and len(scribble.display_points) == 4
    assert drag([(5.0, 5.0)]).is_click  # a scribble tool click is a one-point scribble
    recorder.set_tool(Tool.BOX)
    assert drag([(5.0, 5.0), (6.0, 6.0)]) is None  # a click is no box
    recorder.set_tool(Tool.LASSO)
    recorder.handle(_press(path[0]))
    recorder.handle(_move(path[1]))
    assert recorder.handle(_press(path[1], "right")) == (True, None)  # cancels the lasso being drawn
    assert recorder.handle(_release(path[1])) == (True, None) and not recorder.drawing
    # the cancelling button's release is not the view's either (an unmoved right release opens its context menu)
    assert recorder.handle(_release(path[1], "right")) == (True, None)
    # the next right-drag is the view's zoom again
    for event in (_press((5, 5), "right"), _move((5, 40), left_held=False), _release((5, 40), "right")):
        assert recorder.handle(event) == (False, None)
    recorder.set_tool(None)
    assert recorder.handle(_press((1, 1))) == (False, None)  # no tool: the view keeps every event


@pytest.mark.parametrize("ratio", [1.0, 1.25, 1.5, 2.0])
def test_qt_positions_become_the_display_pixel_the_views_own_interactor_gets(ratio):
    """As VTK's QVTKInteractorAdapter hands a Qt mouse event to the view's interactor (positions scaled by the device
    pixel ratio and truncated, then vtkRenderWindowInteractor::SetEventInformationFlipY: height - y - 1), issue 17:
    the top row is height - 1, not height, and the bottom row 0."""
    import vtk

    tolerance = 1e-5
    width, height = 400, 301
    interactor = vtk.vtkRenderWindowInteractor()
    interactor.SetSize(int(width * ratio + tolerance), int(height * ratio + tolerance))
    for x, y in [(0, 0), (10, 20), (399, 300), (123, 151), (7, 299)]:
        interactor.SetEventInformationFlipY(int(x * ratio + tolerance), int(y * ratio + tolerance))
        assert qt_to_display(x, y, view_height=height, device_pixel_ratio=ratio) == \
            tuple(float(v) for v in interactor.GetEventPosition()), (x, y)
    assert qt_to_display(5, 0, view_height=height, device_pixel_ratio=ratio)[1] == int(height * ratio) - 1


def test_a_position_is_relative_to_the_pane_under_it_as_slicers_interaction_makes_it():
    """Two panes side by side (renderer viewports of a 400 x 200 window): the right pane's XY start at its own
    origin, as vtkMRMLSliceViewInteractorStyle subtracts the poked renderer's origin before applying XYToRAS; a
    Slicer 5.10 slice view (one pane, every layer's renderer full size) keeps the window's XY."""
    from MedicalSAM3SlicerLib.slice_view_interaction import pane_relative

    halves = ((0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0))
    assert pane_relative((250.0, 40.0), (400, 200), halves) == (50.0, 40.0)
    assert pane_relative((120.0, 40.0), (400, 200), halves) == (120.0, 40.0)
    assert pane_relative((250.0, 40.0), (400, 200), ((0.0, 0.0, 1.0, 1.0),) * 3) == (250.0, 40.0)


def test_arming_a_tool_ends_a_markups_placement_and_a_placement_releases_the_tool():
    """One left click is one thing: as the Segment Editor's effects (qMRMLSegmentEditorWidget::setActiveEffect and
    qSlicerSegmentEditorAbstractEffect::interactionNodeModified, v5.10.0), with a real interaction node."""
    import slicer

    from MedicalSAM3SlicerLib.slice_view_interaction import leave_place_mode, tool_must_yield

    scene = new_scene()
    node = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton") or scene.AddNewNodeByClass("vtkMRMLInteractionNode")
    node.SetPlaceModePersistence(1)
    node.SetCurrentInteractionMode(slicer.vtkMRMLInteractionNode.Place)
    assert tool_must_yield(node)  # the user is placing markups: an armed tool lets go
    assert leave_place_mode(node)  # arming a tool ends the placement
    assert node.GetCurrentInteractionMode() == slicer.vtkMRMLInteractionNode.ViewTransform
    assert node.GetPlaceModePersistence() == 1  # the user's own setting stays
    assert not tool_must_yield(node) and not leave_place_mode(node)
    assert not leave_place_mode(None) and not tool_must_yield(None)


def test_no_module_shortcut_takes_a_key_from_the_slice_views_or_the_segment_editor():
    from MedicalSAM3SlicerLib import keyboard_shortcuts

    assert keyboard_shortcuts.clashes() == []
    assert keyboard_shortcuts.clashes((("B", "box"),)) == ["B"]  # what the box key was: the views' previous slice
    runs = {keys for keys, action in keyboard_shortcuts.SHORTCUTS if action == "run"}
    assert runs == {"Ctrl+Return", "Ctrl+Enter"}  # the docs' Ctrl+Enter and the main Return key
    assert {action for _, action in keyboard_shortcuts.SHORTCUTS} == {"positive_point", "negative_point", "box",
                                                                     "run", "undo", "redo"}


# --- geometry --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation,rotated", [("Axial", True), ("Axial", False), ("Sagittal", True),
                                                 ("Coronal", False)])
def test_lasso_on_an_oblique_or_flipped_volume_becomes_a_mask_on_the_voxels_inside_it(blob_scene, orientation,
                                                                                        rotated):
    scene, node, _, _ = blob_scene
    from medsam3.geometry.volume import Volume as EngineVolume
    from MedicalSAM3SlicerLib.volume_nodes import world_ijk_to_ras

    centre_ijk = (26, 22, 12)
    slice_node = _slice_node(scene, node, centre_ijk, orientation, rotated)
    centre_world = world_of_voxel(node, centre_ijk)
    radius_px = 40.0
    outline = _circle(_display_of(slice_node, centre_world), radius_px)
    volume = EngineVolume(np.zeros(SHAPE_KJI, dtype=np.int16), world_ijk_to_ras(node))

    axis, index, mask = lasso_slice_mask(volume, slice_node, display_to_world(slice_node, outline))

    geometry = SliceGeometry.for_volume(volume, axis)
    assert index == centre_ijk[geometry.normal_axis]  # the voxel slice through the lasso's centre
    drawn = np.zeros(SHAPE_KJI, dtype=bool)
    geometry.as_slice_stack(drawn)[index] = mask
    # expected from the node's own matrices: voxels of that slice whose centres, seen along the view's normal,
    # are within the circle's radius of its centre
    xy_to_ras = matrix_to_array(slice_node.GetXYToRAS())
    mm_per_px = np.linalg.norm(xy_to_ras[:3, 0])
    normal = xy_to_ras[:3, 2] / np.linalg.norm(xy_to_ras[:3, 2])
    on_slice = np.zeros(SHAPE_KJI, dtype=bool)
    geometry.as_slice_stack(on_slice)[index] = True
    kji = np.argwhere(on_slice)
    world = np.asarray([world_of_voxel(node, (i, j, k)) for k, j, i in kji]) - centre_world
    in_plane = np.linalg.norm(world - np.outer(world @ normal, normal), axis=1)
    radius_mm = radius_px * mm_per_px
    must = kji[in_plane < radius_mm * np.cos(np.pi / 72) - 1e-3]
    must_not = kji[in_plane > radius_mm + 1e-3]
    assert len(must) > 50
    assert drawn[tuple(must.T)].all(), "voxels inside the lasso are missing"
    assert not drawn[tuple(must_not.T)].any(), "voxels outside the lasso are in the mask"


def test_a_click_and_a_box_land_on_the_voxels_under_the_cursor(blob_scene):
    """What the point and box tools keep (markups at display_to_world of the gesture) is where the user pointed."""
    from MedicalSAM3SlicerLib.prompt_nodes import axis_from_slice_node, box_prompt, point_prompts
    from MedicalSAM3SlicerLib.slice_view_interaction import keep_box
    from MedicalSAM3SlicerLib.volume_nodes import world_ijk_to_ras
    from slicer_scene import add_points, slicer

    scene, node, _, _ = blob_scene
    volume = Volume(np.zeros(SHAPE_KJI, dtype=np.int16), world_ijk_to_ras(node))
    slice_node = _slice_node(scene, node, (30, 17, 12), "Axial", True)  # a view in the volume's plane
    recorder = GestureRecorder()
    recorder.set_tool(Tool.POINT)
    under_cursor = _display_of(slice_node, world_of_voxel(node, (30, 17, 12)))
    recorder.handle(_press(tuple(under_cursor)))
    click = recorder.handle(_release(tuple(under_cursor)))[1]
    clicks = add_points(scene, display_to_world(slice_node, click.display_points))
    np.testing.assert_allclose(point_prompts(volume, clicks)[0].ijk, (30, 17, 12), atol=1e-6)

    recorder.set_tool(Tool.BOX)
    axis = axis_from_slice_node(volume, slice_node)
    normal = SliceGeometry.for_volume(volume, axis).normal_axis
    low, high = np.array([20, 12, 9]), np.array([33, 27, 15])
    low[normal] = high[normal] = (30, 17, 12)[normal]  # two opposite corners on the clicked voxel slice
    corners = [_display_of(slice_node, world_of_voxel(node, ijk)) for ijk in (low, high)]
    recorder.handle(_press(tuple(corners[0])))
    recorder.handle(_move(tuple(corners[1])))
    box = recorder.handle(_release(tuple(corners[1])))[1]
    # as the box tool keeps it (prompt_tools: a bounding-box ROI made by keep_box); a second box replaces the first
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetROIType(slicer.vtkMRMLMarkupsROINode.ROITypeBoundingBox)
    keep_box(roi, slice_node, [corners[0] + 40, corners[1] + 60])
    keep_box(roi, slice_node, box.display_points)
    assert roi.GetNumberOfControlPoints() == 2
    prompt = box_prompt(volume, roi, axis)
    np.testing.assert_allclose(np.sort([prompt.corner_a, prompt.corner_b], axis=0), [low, high], atol=1e-6)


def test_scribble_points_lie_on_the_stroke_on_one_voxel_slice(blob_scene):
    scene, node, _, _ = blob_scene
    from MedicalSAM3SlicerLib.volume_nodes import world_ijk_to_ras

    volume = Volume(np.zeros(SHAPE_KJI, dtype=np.int16), world_ijk_to_ras(node))
    for orientation, rotated in (("Axial", True), ("Axial", False), ("Coronal", True)):
        slice_node = _slice_node(scene, node, (26, 22, 12), orientation, rotated)
        start = _display_of(slice_node, world_of_voxel(node, (26, 22, 12)))
        stroke = np.array([start, start + [25, 5], start + [40, 30], start + [42, 60]])
        dense = np.concatenate([np.linspace(a, b, 20, endpoint=False) for a, b in zip(stroke[:-1], stroke[1:])])

        axis, index, points = scribble_points(volume, slice_node, display_to_world(slice_node, dense),
                                              positive=False)

        geometry = SliceGeometry.for_volume(volume, axis)
        ijk = np.asarray([p.ijk for p in points])
        assert 2 <= len(points) <= 8 and not any(p.positive for p in points)
        np.testing.assert_allclose(ijk[:, geometry.normal_axis], index)  # all on one voxel slice
        shown = np.asarray([_display_of(slice_node, w) for w in volume.ijk_to_ras_points(ijk)])
        distance = [min(_segment_distance(p, a, b) for a, b in zip(stroke[:-1], stroke[1:])) for p in shown]
        assert max(distance) < 0.05, "a scribble point is off the stroke"
        np.testing.assert_allclose(shown[[0, -1]], dense[[0, -1]], atol=0.05)  # both ends are kept
        if rotated:  # on a view in the volume's plane the points are where the stroke is, in 3D too
            plane_z = [abs(_display_z(slice_node, w)) for w in volume.ijk_to_ras_points(ijk)]
            assert max(plane_z) < 1e-3


def _segment_distance(p, a, b):
    t = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0, 1)
    return float(np.linalg.norm(p - (a + t * (b - a))))


def _display_z(slice_node, world):
    import vtk

    ras_to_xy = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Invert(slice_node.GetXYToRAS(), ras_to_xy)
    return ras_to_xy.MultiplyPoint([*map(float, world), 1.0])[2]


def test_strokes_off_the_volume_are_refused_with_a_clear_message(blob_scene):
    scene, node, _, _ = blob_scene
    from MedicalSAM3SlicerLib.volume_nodes import world_ijk_to_ras

    volume = Volume(np.zeros(SHAPE_KJI, dtype=np.int16), world_ijk_to_ras(node))
    slice_node = _slice_node(scene, node, (26, 22, 12), "Axial", True)
    far = display_to_world(slice_node, _circle((5000.0, 5000.0), 10.0))
    with pytest.raises(PromptError, match="draw it"):
        lasso_slice_mask(volume, slice_node, far)
    with pytest.raises(PromptError, match="off the volume"):
        scribble_points(volume, slice_node, far)


# --- end to end through the logic --------------------------------------------------------------------------------
def test_lasso_and_scribble_segment_the_object_they_were_drawn_on(blob_scene):
    scene, node, blob_a, blob_b = blob_scene
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    logic = oracle_logic()
    slice_node = _slice_node(scene, node, BLOB_A_IJK, "Axial", True)
    centre_a = _display_of(slice_node, world_of_voxel(node, BLOB_A_IJK))
    centre_b = _display_of(slice_node, world_of_voxel(node, BLOB_B_IJK))
    lasso_a = display_to_world(slice_node, _circle(centre_a, 8.0))  # a 2 mm lasso inside ball A

    segment_id = logic.segment_stroke(node, segmentation, "lasso", lasso_a, slice_node, whole_volume=False,
                                      text="tumor").segment_ids[0]
    volume = logic._state(node).volume
    axis, index, _ = lasso_slice_mask(volume, slice_node, lasso_a)
    geometry = SliceGeometry.for_volume(volume, axis)

    def on_slice(mask):
        return geometry.slice_image(mask, index)

    def assert_is(mask, expected, other):
        """The mask is that object on that slice (the oracle, like the network, works on a resampled slice, so
        it loses a few edge voxels of these 80-voxel discs), with no voxel of the other object."""
        mask, expected = on_slice(mask), on_slice(expected)
        assert 2 * (mask & expected).sum() / (mask.sum() + expected.sum()) >= 0.8
        assert not (mask & on_slice(other)).any()

    got = segment_mask(segmentation, segment_id, node)
    assert_is(got, blob_a, blob_b)  # the disc it was drawn in, not its neighbour
    assert got.sum() == on_slice(got).sum()  # and nothing on other slices
    assert segmentation.GetSegmentation().GetSegment(segment_id).GetName() == "Tumor"

    # a positive lasso inside ball B adds it; a negative lasso around B removes it again
    logic.segment_stroke(node, segmentation, "lasso", display_to_world(slice_node, _circle(centre_b, 8.0)),
                         slice_node, whole_volume=False, segment_id=segment_id)
    assert_is(segment_mask(segmentation, segment_id, node), blob_a | blob_b, np.zeros_like(blob_a))
    around_b = display_to_world(slice_node, _circle(centre_b, 30.0))  # 7.5 mm: all of B, none of A
    logic.segment_stroke(node, segmentation, "lasso", around_b, slice_node, positive=False, whole_volume=False,
                         segment_id=segment_id)
    assert_is(segment_mask(segmentation, segment_id, node), blob_a, blob_b)
    with pytest.raises(PromptError, match="negative lasso"):  # nothing of the segment is left inside it
        logic.segment_stroke(node, segmentation, "lasso", around_b, slice_node, positive=False, whole_volume=False,
                             segment_id=segment_id)

    # a scribble across ball B, as a new segment, segments B (its points are in B, on that slice)
    scribble_b = display_to_world(slice_node, [centre_b + [-6, 0], centre_b + [0, 3], centre_b + [6, 0]])
    other = logic.segment_stroke(node, segmentation, "scribble", scribble_b, slice_node,
                                 whole_volume=False).segment_ids[0]
    got = segment_mask(segmentation, other, node)
    assert_is(got, blob_b, blob_a)
    assert got.sum() == on_slice(got).sum()


def test_a_lasso_runs_through_the_real_trackers_and_its_slice_keeps_what_was_drawn(tmp_path, one_torch_thread):
    """Tiny random-weight transformers models (the real classes): the lasso's mask prompt is accepted by the image
    tracker and the video tracker, and through the volume the lassoed slice comes back as drawn (the video tracker
    takes a mask prompt as that slice's answer, whatever its weights)."""
    from medsam3.transports.model_loading import load_backend

    from MedicalSAM3SlicerLib.logic import MedicalSAM3SlicerLogic

    scene, node, _, _ = _blob_scene("oblique", tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    logic = MedicalSAM3SlicerLogic(load_backend("tiny-random", device="cpu", cache_dir=tmp_path / "cache",
                                                progress=False))
    slice_node = _slice_node(scene, node, (26, 22, 12), "Axial", True)
    outline = display_to_world(slice_node, _circle(_display_of(slice_node, world_of_voxel(node, (26, 22, 12))), 40))
    axis, index, drawn = lasso_slice_mask(logic._state(node).volume, slice_node, outline)
    geometry = SliceGeometry.for_volume(logic._state(node).volume, axis)

    one_slice = logic.segment_stroke(node, segmentation, "lasso", outline, slice_node, whole_volume=False)
    through = logic.segment_stroke(node, segmentation, "lasso", outline, slice_node, whole_volume=True)

    only_there = segment_mask(segmentation, one_slice.segment_ids[0], node)
    assert only_there.sum() == geometry.slice_image(only_there, index).sum()  # the image tracker: that slice only
    kept = geometry.slice_image(segment_mask(segmentation, through.segment_ids[0], node), index)
    assert 2 * (kept & drawn).sum() / (kept.sum() + drawn.sum()) >= 0.85
