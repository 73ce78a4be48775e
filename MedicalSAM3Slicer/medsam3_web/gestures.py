"""Box, scribble and lasso drawn on a slice view of the page, classified by the bridge's own gesture recorder.

The Slicer module feeds :class:`MedicalSAM3SlicerLib.slice_view_interaction.GestureRecorder` from a Qt event filter
(``MedicalSAM3SlicerWidgets/slice_view_mouse.py``). The page has no Qt: the browser's mouse events reach the views'
VTK interactors (trame-slicer's remote rendering), and slicer-core hands them to the displayable managers' widgets
as ``vtkMRMLInteractionEventData``. A trame-slicer segment editor effect (:class:`PromptGestureEffect`) has one
pipeline per slice view that takes the left button while a tool is armed (as the Segment Editor's effects do) and
gives the recorder the same VTK display coordinates (device pixels, origin bottom left: the frame of the slice
node's ``XYToRAS``) the Qt filter computes. Right and middle drags, the wheel and hovering stay the view's own.

A finished gesture goes to ``on_gesture(slice_node, gesture)``; what it becomes (an ROI box, a stroke for
``prepare_stroke``) is the bridge's (:func:`MedicalSAM3SlicerLib.slice_view_interaction.keep_box`).
"""

from __future__ import annotations

from slicer import vtkMRMLAbstractWidget, vtkMRMLSliceNode
from trame_slicer.segmentation import SegmentationEffect, SegmentationEffectPipeline
from vtkmodules.vtkCommonCore import vtkCommand

from MedicalSAM3SlicerLib.slice_view_interaction import GestureRecorder, MouseEvent

EVENTS = {
    int(vtkCommand.LeftButtonPressEvent): ("press", "left"),
    int(vtkCommand.LeftButtonDoubleClickEvent): ("double_click", "left"),
    int(vtkCommand.LeftButtonReleaseEvent): ("release", "left"),
    int(vtkCommand.MouseMoveEvent): ("move", None),
}


class PromptGesturePipeline(SegmentationEffectPipeline):
    """One slice view's share of :class:`PromptGestureEffect`."""

    def __init__(self):
        super().__init__()
        self._left_held = False

    def CanProcessInteractionEvent(self, event_data) -> tuple[bool, float]:
        if not self.IsActive() or event_data.GetType() not in EVENTS:
            return False, 0
        if event_data.GetType() == int(vtkCommand.MouseMoveEvent):
            return self._effect.recorder.drawing and self._left_held, 0  # hovering stays the view's
        return True, 0

    def ProcessInteractionEvent(self, event_data) -> bool:
        kind, button = EVENTS.get(event_data.GetType(), (None, None))
        if kind is None or self._view is None:
            return False
        if kind in ("press", "double_click"):
            self._left_held = True
        elif kind == "release":
            self._left_held = False
        slice_node = self._view.get_view_node()
        x, y = event_data.GetDisplayPosition()
        consumed, gesture = self._effect.recorder.handle(
            MouseEvent(kind, button, self._left_held, (float(x), float(y)), view=slice_node.GetID()))
        if gesture is not None and self._effect.on_gesture is not None:
            self._effect.on_gesture(slice_node, gesture)
        return consumed

    def GetWidgetState(self) -> int:
        if self._effect is not None and self._effect.recorder.drawing:
            return vtkMRMLAbstractWidget.WidgetStateUser  # keeps the drag while the mouse is outside the box
        return super().GetWidgetState()

    def LoseFocus(self, event_data) -> None:
        super().LoseFocus(event_data)
        self._left_held = False
        if self._effect is not None:
            self._effect.recorder.cancel()


class PromptGestureEffect(SegmentationEffect):
    """Box / scribble / lasso tools of the page, as a segment editor effect (active while such a tool is armed)."""

    def __init__(self) -> None:
        super().__init__()
        self.recorder = GestureRecorder()
        self.on_gesture = None  # (slice_node, Gesture) -> None

    def _create_pipeline(self, view_node, _parameter):
        return PromptGesturePipeline() if isinstance(view_node, vtkMRMLSliceNode) else None
