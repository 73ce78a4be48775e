"""Qt plumbing of the slice-view prompt tools: an event filter on the slice views that hands their mouse events
to a :class:`~MedicalSAM3SlicerLib.slice_view_interaction.GestureRecorder`, and a live outline of the gesture.

Every decision (consume the event or not, click or drag, what the gesture was) is the recorder's; this file only
translates Qt events and draws. SlicerNNInteractive captures its prompts the same way, with an event filter on the
slice views instead of markups place mode, so that each click is one click and the right and middle buttons keep
zooming and panning. The filter goes on the slice view and on its child widgets: ``ctkVTKAbstractView`` renders
into a child ``QVTKOpenGLNativeWidget``, which is the widget that receives the mouse events
(CTK ``Libs/Visualization/VTK/Widgets/ctkVTKAbstractView.cpp``; ``qMRMLSliceView`` derives from ``ctkVTKSliceView``,
Slicer ``Libs/MRML/Widgets/qMRMLSliceView.h``).
"""

from __future__ import annotations

import logging

import qt
import slicer
import vtk

from MedicalSAM3SlicerLib.slice_view_interaction import GestureRecorder, MouseEvent, Tool, pane_relative, qt_to_display

_OUTLINE_COLOURS = {True: (0.1, 0.85, 0.1), False: (0.95, 0.15, 0.15)}


def _event_kind(event) -> str | None:
    kind = event.type()
    for qt_kind, name in ((qt.QEvent.MouseButtonPress, "press"), (qt.QEvent.MouseButtonRelease, "release"),
                          (qt.QEvent.MouseMove, "move"), (qt.QEvent.MouseButtonDblClick, "double_click")):
        if kind == qt_kind:
            return name
    return None


def _button(event) -> str | None:
    button = event.button()
    for qt_button, name in ((qt.Qt.LeftButton, "left"), (qt.Qt.RightButton, "right"),
                            (qt.Qt.MiddleButton, "middle")):
        if button == qt_button:
            return name
    return None


class _ViewEventFilter(qt.QObject):
    def __init__(self, owner: "SliceViewMouse", view_name: str):
        qt.QObject.__init__(self)
        self._owner = owner
        self._view_name = view_name

    def eventFilter(self, watched, event):
        try:
            return self._owner.handle(self._view_name, watched, event)
        except Exception:  # an exception must never escape into Qt's event loop
            logging.exception("MedicalSAM3Slicer: a slice view mouse event failed")
            return False


class _Outline:
    """The gesture being drawn, as a 2D line over one slice view (display coordinates)."""

    def __init__(self):
        self._points = vtk.vtkPoints()
        self._lines = vtk.vtkCellArray()
        self._poly = vtk.vtkPolyData()
        self._poly.SetPoints(self._points)
        self._poly.SetLines(self._lines)
        mapper = vtk.vtkPolyDataMapper2D()
        mapper.SetInputData(self._poly)
        self._actor = vtk.vtkActor2D()
        self._actor.SetMapper(mapper)
        self._actor.GetProperty().SetLineWidth(2)
        self._view = None
        self._renderer = None

    def show(self, view, points, tool: Tool, positive: bool) -> None:
        if len(points) < 2:
            self.hide()
            return
        renderer = view.renderWindow().GetRenderers().GetFirstRenderer()
        if renderer is not self._renderer:
            self.hide()
            renderer.AddActor2D(self._actor)
            self._view, self._renderer = view, renderer
        if tool == Tool.BOX:
            (x0, y0), (x1, y1) = points[0], points[-1]
            points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        closed = tool in (Tool.BOX, Tool.LASSO)
        self._actor.GetProperty().SetColor(*_OUTLINE_COLOURS[bool(positive)])
        self._points.Reset()
        for x, y in points:
            self._points.InsertNextPoint(float(x), float(y), 0.0)
        ids = list(range(len(points))) + ([0] if closed else [])
        self._lines.Reset()
        self._lines.InsertNextCell(len(ids))
        for index in ids:
            self._lines.InsertCellPoint(index)
        self._points.Modified()
        self._poly.Modified()
        view.scheduleRender()

    def hide(self) -> None:
        if self._renderer is not None:
            self._renderer.RemoveActor2D(self._actor)
            try:
                self._view.scheduleRender()
            except (RuntimeError, ValueError):  # the view was destroyed meanwhile: nothing to redraw
                pass
        self._view = self._renderer = None


class SliceViewMouse:
    """Installs the event filter on every slice view of the layout and reports finished gestures."""

    def __init__(self, recorder: GestureRecorder, on_gesture):
        self.recorder = recorder
        self.on_gesture = on_gesture
        self._filters = []
        self._views = {}
        self._outline = _Outline()

    @property
    def installed(self) -> bool:
        return bool(self._filters)

    def set_tool(self, tool, positive=True) -> None:
        """Arm a tool (None: release). A gesture in progress is dropped and its outline goes with it; while a tool
        is armed the slice views show a cross cursor, so the user sees that a left click is a prompt."""
        self.recorder.set_tool(tool, positive)
        self._outline.hide()
        self._show_cursor()

    def _show_cursor(self) -> None:
        for target, _ in self._filters:
            try:
                if self.recorder.tool is not None:
                    target.setCursor(qt.QCursor(qt.Qt.CrossCursor))
                else:
                    target.unsetCursor()
            except (RuntimeError, ValueError):  # the widget was destroyed meanwhile
                pass

    def install(self, layout_manager) -> None:
        """Watch every slice view (again: views added by a layout change are picked up)."""
        self.remove()
        if layout_manager is None:  # no views (e.g. Slicer started with --no-main-window)
            return
        for name in layout_manager.sliceViewNames():
            slice_view = layout_manager.sliceWidget(name).sliceView()
            self._views[name] = slice_view
            # the view itself and every widget inside it (findChildren lists the view first)
            for target in [child for child in slicer.util.findChildren(slice_view) if child.isWidgetType()]:
                event_filter = _ViewEventFilter(self, name)
                target.installEventFilter(event_filter)
                self._filters.append((target, event_filter))
        self._show_cursor()

    def remove(self) -> None:
        for target, event_filter in self._filters:
            try:
                target.removeEventFilter(event_filter)
                target.unsetCursor()
            except (RuntimeError, ValueError):  # the widget was destroyed (PythonQt refuses calls on it): no filter
                pass
        self._filters.clear()
        self._views.clear()
        self.recorder.cancel()
        self._outline.hide()

    def handle(self, view_name: str, watched, event) -> bool:
        kind = _event_kind(event)
        if kind is None or self.recorder.tool is None:
            return False
        view = self._views[view_name]
        position = event.pos()
        if watched is not view:
            position = watched.mapTo(view, position)
        xy = qt_to_display(position.x(), position.y(), view.height, view.devicePixelRatioF())
        window = view.renderWindow()
        renderers = window.GetRenderers()
        viewports = [renderers.GetItemAsObject(i).GetViewport() for i in range(renderers.GetNumberOfItems())]
        xy = pane_relative(xy, window.GetSize(), viewports or [(0.0, 0.0, 1.0, 1.0)])
        left_held = bool(event.buttons() & qt.Qt.LeftButton)
        consumed, gesture = self.recorder.handle(MouseEvent(kind, _button(event), left_held, xy, view_name))
        if self.recorder.drawing:
            self._outline.show(view, self.recorder.current_points, self.recorder.tool, self.recorder.positive)
        else:
            self._outline.hide()
        if gesture is not None:  # act after Qt has finished delivering this event
            qt.QTimer.singleShot(0, lambda: self.on_gesture(gesture))
        return consumed
