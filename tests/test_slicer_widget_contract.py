"""What the widget promises the user, checked against Slicer's own classes where slicer-core has them:

- the Segment Editor's undo (its vtkSlicerSegmentEditorLogic, the class behind qMRMLSegmentEditorWidget's
  saveStateForUndo and Ctrl+Z in Slicer 5.10) returns to the segment just before the model wrote;
- the source selector offers single-component scalar volumes, never labelmaps nor vector (RGB, DWI) volumes
  (qMRMLSortFilterProxyModel's rule, imitated);
- the embedded Segment Editor shows neither its own segmentation nor its own source selector.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from slicer_scene import add_points, load_volume_node, new_scene, slicer, world_of_voxel

from medsam3.session import MaskUpdate
from medsam3.volume import Volume

from MedicalSAM3SlicerLib.segment_io import apply_update, segment_mask

from oracle import ground_truth_volume
from test_slicer_placement import oracle_logic

UI_FILE = Path(__file__).resolve().parents[1] / "MedicalSAM3Slicer" / "Resources" / "UI" / "MedicalSAM3Slicer.ui"


def _ui_widget(name):
    return next(w for w in ElementTree.parse(UI_FILE).iter("widget") if w.get("name") == name)


def _ui_property(widget, name):
    element = widget.find(f"property[@name='{name}']")
    if element is None:
        return None
    value = element[0]
    if value.tag == "stringlist":
        return [s.text for s in value.findall("string")]
    if value.tag == "bool":
        return value.text == "true"
    return value.text


def test_segment_editor_undo_returns_to_the_hand_drawn_segment_before_the_model_wrote(tmp_path):
    shape = (12, 40, 40)
    k, j, i = np.indices(shape)
    ball = (i - 20) ** 2 + (j - 20) ** 2 + ((k - 6) * 2) ** 2 <= 64
    scene = new_scene()
    reference = Volume(np.zeros(shape, dtype=np.int16), np.diag([0.8, 0.8, 2.0, 1.0]))
    volume_node = load_volume_node(scene, ground_truth_volume(reference, ball), tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("", "drawn")

    # the embedded editor's logic, set up as qMRMLSegmentEditorWidget sets it up (maximumNumberOfUndoStates)
    editor_node = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())  # (the class is registered by the application)
    editor = slicer.vtkSlicerSegmentEditorLogic()
    editor.SetMRMLScene(scene)
    editor.SetSegmentEditorNode(editor_node)
    editor.SetSegmentationNode(segmentation)
    editor.SetSourceVolumeNode(volume_node)
    editor.SetMaximumNumberOfUndoStates(10)

    # the user paints a few voxels by hand (an editor effect saves the state for undo before it writes)
    editor.SaveStateForUndo()
    drawn = np.zeros(shape, dtype=bool)
    drawn[6, 18:23, 18:23] = True
    apply_update(MaskUpdate(0, (0, shape[0], 0, shape[1], 0, shape[2]), drawn), segmentation, segment_id,
                 volume_node)

    # then clicks in the ball: the module writes the model's answer, saving the editor's state first
    logic = oracle_logic()
    clicks = add_points(scene, world_of_voxel(volume_node, (20, 20, 6)))
    request = logic.prepare(volume_node, segmentation, positive_points=clicks, view="axial", whole_volume=False,
                            segment_id=segment_id)
    logic.apply(request, logic.predict(request), save_state_for_undo=editor.SaveStateForUndo)
    after_model = segment_mask(segmentation, segment_id, volume_node)
    assert after_model[6].sum() > drawn.sum()

    editor.Undo()  # the editor's Ctrl+Z
    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, volume_node), drawn)
    editor.Redo()
    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, volume_node), after_model)


def _listed_by_node_combo_box(node, node_types, show_child_node_types=True, hide_child_node_types=()):
    """The type filter of qMRMLSortFilterProxyModel::filterAcceptsRow (Libs/MRML/Widgets/
    qMRMLSortFilterProxyModel.cxx, Slicer v5.10.0), which qMRMLNodeComboBox applies to every scene node."""
    for node_type in node_types:
        if not node.IsA(node_type):
            continue
        if not show_child_node_types and node_type != node.GetClassName():
            continue
        if show_child_node_types and any(node.IsA(hidden) for hidden in hide_child_node_types):
            return False
        return True
    return False


def test_source_selector_lists_scalar_volumes_and_no_labelmap():
    selector = _ui_widget("sourceVolumeSelector")
    filters = dict(node_types=_ui_property(selector, "nodeTypes"),
                   show_child_node_types=_ui_property(selector, "showChildNodeTypes") is not False,
                   hide_child_node_types=_ui_property(selector, "hideChildNodeTypes") or ())
    scene = new_scene()
    listed = {cls: _listed_by_node_combo_box(scene.AddNewNodeByClass(cls), **filters)
              for cls in ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLSegmentationNode",
                          "vtkMRMLVectorVolumeNode", "vtkMRMLDiffusionWeightedVolumeNode")}
    assert listed == {"vtkMRMLScalarVolumeNode": True, "vtkMRMLLabelMapVolumeNode": False,
                      "vtkMRMLSegmentationNode": False, "vtkMRMLVectorVolumeNode": False,
                      "vtkMRMLDiffusionWeightedVolumeNode": False}


def test_embedded_segment_editor_has_no_selectors_of_its_own():
    editor = _ui_widget("segmentEditorWidget")
    assert _ui_property(editor, "segmentationNodeSelectorVisible") is False
    assert _ui_property(editor, "sourceVolumeNodeSelectorVisible") is False
