"""The prompt tools of the module panel: + / - point, box, + / - scribble, + / - lasso.

The tools take the mouse through an event filter on the slice views (:mod:`.slice_view_mouse`; the decisions are
:mod:`MedicalSAM3SlicerLib.slice_view_interaction`'s), not through markups place mode. Arming a tool ends a
markups placement in progress (as a Segment Editor effect does), and starting a placement releases the tool; the
place-mode persistence (Slicer ``Libs/MRML/Core/vtkMRMLInteractionNode.h``, v5.10.0) is never changed, so leaving
the module has nothing of the user's to restore.
Clicks and boxes are kept as markups (visible on the views, read by the logic); scribbles and lassos are queued
as strokes for the widget to run at once. One tool is active at a time, and never together with an effect of
the embedded Segment Editor (both would want the same left clicks).
"""

from __future__ import annotations

import slicer

from MedicalSAM3SlicerLib.prompt_nodes import prompt_node, slice_node_showing
from MedicalSAM3SlicerLib.slice_view_interaction import (GestureRecorder, Tool, display_to_world, keep_box,
                                                         leave_place_mode)

from .slice_view_mouse import SliceViewMouse

TOOLS = {"positive_point": (Tool.POINT, True), "negative_point": (Tool.POINT, False), "box": (Tool.BOX, True),
         "positive_scribble": (Tool.SCRIBBLE, True), "negative_scribble": (Tool.SCRIBBLE, False),
         "positive_lasso": (Tool.LASSO, True), "negative_lasso": (Tool.LASSO, False)}


class PromptTools:
    """Tool buttons (name -> checkable QPushButton, names of :data:`TOOLS`), the markups that clicks and boxes
    are kept in, and the strokes waiting to run. ``on_prompt()`` is called after each finished gesture."""

    def __init__(self, buttons: dict, segment_editor_widget, on_prompt):
        self.buttons = buttons
        self.segment_editor_widget = segment_editor_widget
        self.on_prompt = on_prompt
        self.mouse = SliceViewMouse(GestureRecorder(), self._on_gesture)
        self.nodes = {}  # "positive" / "negative" point lists, "box" ROI
        self.view = None  # the slice node the kept clicks and box were placed on
        self.strokes = []  # (Gesture, slice node, world RAS points) waiting to run
        self._layout_connected = False
        for name, button in buttons.items():
            button.connect("toggled(bool)", lambda on, name=name: self.select(name, on))

    # --- activation ----------------------------------------------------------------------------------------
    def select(self, name, on):
        """Pressing a tool button releases the other tools and the Segment Editor's active effect."""
        if on:
            for other, button in self.buttons.items():
                if other != name and button.checked:
                    button.blockSignals(True)
                    button.checked = False
                    button.blockSignals(False)
            self.segment_editor_widget.setActiveEffect(None)
            leave_place_mode(slicer.app.applicationLogic().GetInteractionNode())  # a markups placement ends
            self.mouse.install(slicer.app.layoutManager())  # again: a layout change may have added views
            self.mouse.set_tool(*TOOLS[name])
        elif not any(button.checked for button in self.buttons.values()):
            self.mouse.set_tool(None)

    @property
    def armed(self):
        return self.mouse.recorder.tool is not None

    def release(self):
        for button in self.buttons.values():
            button.blockSignals(True)
            button.checked = False
            button.blockSignals(False)
        self.mouse.set_tool(None)

    def install(self):
        layout_manager = slicer.app.layoutManager()
        if layout_manager is not None and not self._layout_connected:
            # views a layout change adds get the filter too (qMRMLLayoutManager::layoutChanged(int), Slicer
            # Libs/MRML/Widgets/qMRMLLayoutManager.h, v5.10.0)
            layout_manager.connect("layoutChanged(int)", self._on_layout_changed)
            self._layout_connected = True
        self.mouse.install(layout_manager)

    def _on_layout_changed(self, _layout):
        if self.mouse.installed:  # only while the module is shown
            self.mouse.install(slicer.app.layoutManager())

    def remove(self):
        self.release()
        self.mouse.remove()

    def forget_scene(self):
        """The scene was closed: its markups are gone, and strokes drawn on it must not run on the next."""
        self.release()
        self.nodes.clear()
        self.strokes.clear()
        self.view = None

    # --- gestures ------------------------------------------------------------------------------------------
    def node(self, kind):
        """The point list (positive / negative) or ROI that clicks and boxes are kept in, created on first use, never
        saved with the scene (MedicalSAM3SlicerLib.prompt_nodes.prompt_node)."""
        node = prompt_node(slicer.mrmlScene, kind, self.nodes.get(kind))
        self.nodes[kind] = node
        return node

    def _on_gesture(self, gesture):
        layout_manager = slicer.app.layoutManager()
        slice_widget = layout_manager.sliceWidget(gesture.view) if layout_manager is not None else None
        if slice_widget is None:
            return
        slice_node = slice_widget.mrmlSliceNode()
        world = display_to_world(slice_node, gesture.display_points)
        if gesture.tool == Tool.POINT:
            self.node("positive" if gesture.positive else "negative").AddControlPointWorld(
                *[float(v) for v in world[0]])
            self.view = slice_node
        elif gesture.tool == Tool.BOX:
            keep_box(self.node("box"), slice_node, gesture.display_points)
            self.view = slice_node
            self.buttons["box"].checked = False  # one box per prompt
        else:
            self.strokes.append((gesture, slice_node, world))
        self.on_prompt()

    # --- what was placed -----------------------------------------------------------------------------------
    def has_placed(self):
        return any(node.GetScene() is not None and node.GetNumberOfControlPoints() > 0
                   for node in self.nodes.values())

    def placed_view(self, slice_nodes):
        """The slice view the kept prompts lie in: the one the tools placed them in, or else (points placed by
        hand into the lists) the view whose plane passes closest to the latest point."""
        if self.view is not None:
            return self.view
        latest = None
        for kind in ("positive", "negative", "box"):
            node = self.nodes.get(kind)
            if node is not None and node.GetNumberOfControlPoints() > 0:
                position = [0.0, 0.0, 0.0]
                node.GetNthControlPointPositionWorld(node.GetNumberOfControlPoints() - 1, position)
                latest = position
        return slice_node_showing(latest, slice_nodes) if latest is not None else None

    def clear_placed(self):
        for node in self.nodes.values():
            node.RemoveAllControlPoints()
        self.view = None
