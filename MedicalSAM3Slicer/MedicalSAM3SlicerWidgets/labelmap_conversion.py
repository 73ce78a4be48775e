"""Asking before a closed-surface segmentation (STL / OBJ, RTSTRUCT, .seg.vtm) is converted to a binary labelmap.

The logic refuses such a segmentation, unchanged (:class:`MedicalSAM3SlicerLib.segment_io.SourceRepresentationError`);
the widget then asks, as qMRMLSegmentEditorWidget::setSourceRepresentationToBinaryLabelmap does before an effect
edits one (Slicer's Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.cxx). On yes the logic converts
on the source volume's grid after saving the embedded Segment Editor's undo state.
"""

from __future__ import annotations

import slicer


def offer_labelmap_conversion(logic, volume, segmentation, segment_editor_widget, error) -> str:
    """Ask; convert on yes. Returns the text for the module's notes."""
    if volume is None or segmentation is None or not slicer.util.confirmYesNoDisplay(
            f"{error}\n\nConvert '{segmentation.GetName()}' to a binary labelmap on the grid of '{volume.GetName()}' "
            "now? Some surface detail may be lost; Ctrl+Z in the Segment Editor undoes it."):
        return str(error)
    result = logic.convert_to_labelmap(volume, segmentation,
                                       save_state_for_undo=segment_editor_widget.saveStateForUndo)
    return "\n".join(result.notes + ["Prompt again to segment."])
