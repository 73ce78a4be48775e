"""What the widget promises the user, checked against Slicer's own classes where slicer-core has them:

- the Segment Editor's undo (its vtkSlicerSegmentEditorLogic, the class behind qMRMLSegmentEditorWidget's
  saveStateForUndo and Ctrl+Z in Slicer 5.10) returns to the segment just before the model wrote;
- the source selector offers single-component scalar volumes, never labelmaps nor vector (RGB, DWI) volumes
  (its .ui settings), and the bridge refuses those when a script hands them over;
- the embedded Segment Editor shows neither its own segmentation nor its own source selector.

Tests named test_wiring_* read the widget's source or .ui file: PythonQt and Slicer's GUI cannot run here, so they
check only how the widget is wired (which slot calls what, which property is set); every decision those slots
take is tested as behaviour in the bridge.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from slicer_scene import add_points, load_volume_node, new_scene, slicer, world_of_voxel

from medsam3.interaction.session import MaskUpdate
from medsam3.geometry.volume import Volume

from MedicalSAM3SlicerLib.parameters import MedicalSAM3SlicerParameters
from MedicalSAM3SlicerLib.segment_io import apply_update, segment_mask

from oracle import ground_truth_volume
from slicer_oracle import oracle_logic

UI_FILE = Path(__file__).resolve().parents[2] / "MedicalSAM3Slicer" / "Resources" / "UI" / "MedicalSAM3Slicer.ui"


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


def _segment_editor_logic(scene, segmentation, volume_node):
    """The embedded editor's logic, set up as qMRMLSegmentEditorWidget sets it up (maximumNumberOfUndoStates)."""
    editor_node = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())  # (the class is registered by the application)
    editor = slicer.vtkSlicerSegmentEditorLogic()
    editor.SetMRMLScene(scene)
    editor.SetSegmentEditorNode(editor_node)
    editor.SetSegmentationNode(segmentation)
    editor.SetSourceVolumeNode(volume_node)
    editor.SetMaximumNumberOfUndoStates(10)
    return editor


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

    editor = _segment_editor_logic(scene, segmentation, volume_node)

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


def test_wiring_the_source_selector_offers_exactly_scalar_volume_nodes():
    """Wiring (read from the .ui file): qMRMLNodeComboBox lists the scene nodes its qMRMLSortFilterProxyModel
    accepts; with nodeTypes vtkMRMLScalarVolumeNode and showChildNodeTypes false it accepts only nodes of exactly
    that class, so labelmaps, vector (RGB) and DWI volumes, subclasses of it, are not offered
    (Libs/MRML/Widgets/qMRMLSortFilterProxyModel.cxx, filterAcceptsRow, Slicer v5.10.0)."""
    selector = _ui_widget("sourceVolumeSelector")
    assert _ui_property(selector, "nodeTypes") == ["vtkMRMLScalarVolumeNode"]
    assert _ui_property(selector, "showChildNodeTypes") is False


def _volume_node_of_class(scene, class_name, components=1):
    """A small volume node of ``class_name`` with ``components`` scalars per voxel."""
    import vtk

    node = scene.AddNewNodeByClass(class_name, class_name)
    image = vtk.vtkImageData()
    image.SetDimensions(6, 5, 4)
    image.AllocateScalars(vtk.VTK_SHORT, components)
    node.SetAndObserveImageData(image)
    return node


def test_a_volume_the_selector_would_not_offer_is_refused_in_one_line_when_given_by_script(tmp_path):
    """The same rule, as the bridge decides it when a script (or a scene loaded with its old choice) hands the
    logic a source the selector would not list: a labelmap, a vector or DWI volume are refused with a one-line
    message that says what to choose, and nothing is written; a plain scalar volume is accepted."""
    import pytest

    from medsam3.errors import VolumeError

    scene = new_scene()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    refused = {"vtkMRMLLabelMapVolumeNode": ("labelmap", 1), "vtkMRMLVectorVolumeNode": ("components", 3),
               "vtkMRMLDiffusionWeightedVolumeNode": ("components", 7)}
    logic = oracle_logic()
    for class_name, (says, components) in refused.items():
        node = _volume_node_of_class(scene, class_name, components)
        with pytest.raises(VolumeError, match=says) as error:
            logic.segment(node, segmentation, text="liver")
        assert "\n" not in str(error.value) and "choose" in str(error.value)
        assert segmentation.GetSegmentation().GetNumberOfSegments() == 0
    scalar = _volume_node_of_class(scene, "vtkMRMLScalarVolumeNode")
    logic.segment(scalar, segmentation, text="liver")  # accepted: the oracle finds nothing in a blank image


def test_wiring_embedded_segment_editor_has_no_selectors_of_its_own():
    editor = _ui_widget("segmentEditorWidget")
    assert _ui_property(editor, "segmentationNodeSelectorVisible") is False
    assert _ui_property(editor, "sourceVolumeNodeSelectorVisible") is False


# --- the widget's life cycle, read from its source (PythonQt and Slicer's GUI cannot run here) -------------------
MODULE_DIR = UI_FILE.parents[2]
WIDGET_SOURCES = [MODULE_DIR / "MedicalSAM3Slicer.py", *sorted((MODULE_DIR / "MedicalSAM3SlicerWidgets").glob("*.py"))]


def _functions(path):
    import ast

    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)]


def _called_names(function) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            target = node.func
            names.add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return names


WIDGET_CLASS_SOURCES = [MODULE_DIR / "MedicalSAM3Slicer.py", MODULE_DIR / "MedicalSAM3SlicerWidgets" / "model_panel.py"]


def _widget_methods():
    """The widget's methods: the module file's and those of its model-panel mixin."""
    return {f.name: f for path in WIDGET_CLASS_SOURCES for f in _functions(path)}


def test_wiring_single_key_shortcuts_and_the_editors_shortcuts_live_only_between_enter_and_exit():
    """Slicer's Segment Editor module installs its keyboard shortcuts in enter() and removes them in exit(), and
    exit() deactivates the effect and drops the view observations (Modules/Scripted/SegmentEditor/SegmentEditor.py,
    v5.10.0). P, N and B (B is also the slice views' previous-slice key) must not outlive the module."""
    methods = _widget_methods()
    calls = {name: _called_names(f) for name, f in methods.items()}
    assert {name for name, called in calls.items() if "QShortcut" in called} == {"_install_shortcuts"}
    assert {name for name, called in calls.items() if "_install_shortcuts" in called} == {"enter"}
    assert {"exit", "cleanup"} <= {name for name, called in calls.items() if "_remove_shortcuts" in called}
    assert "installKeyboardShortcuts" in calls["enter"]
    assert {"setActiveEffect", "uninstallKeyboardShortcuts", "removeViewObservations"} <= calls["exit"]
    assert "remove" in calls["exit"] and "install" in calls["enter"]  # the slice-view event filters


def test_wiring_the_module_never_changes_the_interaction_mode_it_would_have_to_restore():
    """Prompts are captured by an event filter on the slice views, not by markups place mode: the place-mode
    persistence and the active place node stay as the user left them. The one change is ending a placement in
    progress when a tool is armed (slice_view_interaction.leave_place_mode, as a Segment Editor effect does)."""
    for path in WIDGET_SOURCES:
        text = path.read_text()
        for setter in ("SetPlaceModePersistence", "SetCurrentInteractionMode", "SwitchToViewTransformMode",
                       "SetActivePlaceNodeID"):
            assert setter not in text, f"{path.name} changes the interaction node ({setter})"


def test_wiring_an_armed_tool_and_a_markups_placement_never_share_a_click_and_the_keys_come_from_one_table():
    """Issue 17: arming a tool (PromptTools.select) ends a placement; the widget observes the interaction node and
    releases the tool when a placement starts; tools are armed and released through SliceViewMouse.set_tool, which
    also drops a half-drawn outline and sets the cursor; the shortcuts are keyboard_shortcuts.SHORTCUTS."""
    tools = {f.name: _called_names(f) for f in _functions(MODULE_DIR / "MedicalSAM3SlicerWidgets"
                                                          / "prompt_tools.py")}
    assert "leave_place_mode" in tools["select"] and "set_tool" in tools["select"] and "set_tool" in tools["release"]
    mouse = {f.name: f for f in _functions(MODULE_DIR / "MedicalSAM3SlicerWidgets"
                                           / "slice_view_mouse.py")}
    assert {"hide", "_show_cursor"} <= _called_names(mouse["set_tool"])
    assert {"qt_to_display", "pane_relative"} <= _called_names(mouse["handle"])
    text = (MODULE_DIR / "MedicalSAM3SlicerWidgets" / "prompt_tools.py").read_text()
    assert "recorder.set_tool" not in text
    methods = {name: _called_names(f) for name, f in _widget_methods().items()}
    assert "_on_interaction_node_modified" in (MODULE_DIR / "MedicalSAM3Slicer.py").read_text()
    assert {"tool_must_yield", "release"} <= methods["_on_interaction_node_modified"]
    import ast

    install = ast.unparse(_widget_methods()["_install_shortcuts"])
    assert "in SHORTCUTS" in install and '"B"' not in install and "Ctrl+Return" not in install


def test_wiring_every_use_of_the_layout_manager_and_main_window_copes_with_their_absence():
    """Slicer's generic module tests start Slicer with --no-main-window (CMake/SlicerMacroBuildScriptedModule.cmake,
    v5.10.0): slicer.app.layoutManager() and slicer.util.mainWindow() are None there."""
    import ast

    for path in WIDGET_SOURCES:
        for function in _functions(path):
            uses = [node for node in ast.walk(function) if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute) and node.func.attr in ("layoutManager", "mainWindow")]
            if not uses:
                continue
            checks_none = any(isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value is None
                                                                   for c in node.comparators)
                              for node in ast.walk(function))
            handed_on = all(any(use in call.args for call in ast.walk(function) if isinstance(call, ast.Call)
                                and isinstance(call.func, ast.Attribute) and call.func.attr == "install")
                            for use in uses)
            assert checks_none or handed_on, f"{path.name}: {function.name}() uses the layout or main window " \
                                             "without checking that there is one"
    install = next(f for f in _functions(MODULE_DIR / "MedicalSAM3SlicerWidgets" / "slice_view_mouse.py")
                   if f.name == "install")
    assert "layout_manager is None" in ast.unparse(install)


def test_a_scene_loaded_later_brings_its_own_choices_to_the_panel():
    """Loading a scene into the running application (File > Add Data of a .mrml) imports it into the current
    scene and ends with EndImportEvent (vtkMRMLScene::Import); the widget then re-reads the parameter node and
    the embedded editor's node (_on_scene_imported, as SegmentEditor.py's onSceneEndImport). What it reads there
    must be the loaded scene's choices, not those the panel showed before."""
    saved = new_scene()
    volume = saved.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT of the loaded scene")
    segmentation = saved.AddNewNodeByClass("vtkMRMLSegmentationNode", "organs of the loaded scene")
    parameters = MedicalSAM3SlicerParameters.from_scene(saved)
    parameters.source_volume, parameters.segmentation, parameters.text = volume, segmentation, "liver"
    saved.SetSaveToXMLString(1)
    saved.Commit()
    xml = saved.GetSceneXMLString()

    running = new_scene()  # the application, where the module was already used on another volume
    before = MedicalSAM3SlicerParameters.from_scene(running)
    before.source_volume = running.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT used before")
    before.text = "spleen"
    shown = {}

    def on_end_import(scene, event):  # what _on_scene_imported -> _load_parameters reads
        p = MedicalSAM3SlicerParameters.from_scene(scene)
        shown.update(text=p.text, volume=p.source_volume.GetName() if p.source_volume else None,
                     segmentation=p.segmentation.GetName() if p.segmentation else None)

    running.AddObserver(slicer.vtkMRMLScene.EndImportEvent, on_end_import)
    running.SetLoadFromXMLString(1)
    running.SetSceneXMLString(xml)
    running.Import()

    assert shown == {"text": "liver", "volume": "CT of the loaded scene",
                     "segmentation": "organs of the loaded scene"}
    assert running.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1  # one panel state, not two


def test_wiring_nothing_that_needs_the_model_or_torch_starts_while_pip_is_installing_or_the_model_works():
    """slicer.util.pip_install pumps Qt events while pip runs (logProcessOutput calls processEvents,
    Base/Python/slicer/util.py, v5.10.0): buttons are disabled then, but Return in the text field and the
    Ctrl+Return / Ctrl+Alt+Z shortcuts still arrive. Every slot that starts model work returns while installing,
    and while the model works (a request prepared before the previous result is written would miss it: a click
    meant to refine a new segment would start another one)."""
    import ast

    methods = _widget_methods()
    starters = {name for name, f in methods.items() if {"_submit", "prefetch_around"} & _called_names(f)} - {"_submit"}
    assert {"on_segment_text", "on_run_prompts", "_segment_action", "_run_pending", "_prefetch"} <= starters
    for name in starters | {"on_load_model", "on_install_dependencies"}:
        first_if = next(node for node in methods[name].body if isinstance(node, ast.If))
        assert "self._installing" in ast.unparse(first_if.test), f"{name}() does not return while installing"
        assert "self.worker.busy" in ast.unparse(first_if.test), f"{name}() does not wait for the model"
        assert isinstance(first_if.body[-1], ast.Return), f"{name}() does not return while installing"


def test_segment_editor_undo_of_a_prompt_that_found_nothing_removes_only_its_empty_segment(tmp_path):
    """A prompt into a new segment adds the segment even when the model finds nothing there: that is a change too,
    so the editor's undo state is saved first, and Ctrl+Z removes the empty segment, not the user's painting."""
    shape = (8, 30, 30)
    scene = new_scene()
    reference = Volume(np.zeros(shape, dtype=np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))
    volume_node = load_volume_node(scene, ground_truth_volume(reference, np.zeros(shape, dtype=bool)), tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    painted_id = segmentation.GetSegmentation().AddEmptySegment("", "painted")
    editor = _segment_editor_logic(scene, segmentation, volume_node)
    editor.SaveStateForUndo()
    painted = np.zeros(shape, dtype=bool)
    painted[4, 10:14, 10:14] = True
    apply_update(MaskUpdate(0, (0, shape[0], 0, shape[1], 0, shape[2]), painted), segmentation, painted_id,
                 volume_node)

    logic = oracle_logic()
    clicks = add_points(scene, world_of_voxel(volume_node, (25, 25, 4)))
    request = logic.prepare(volume_node, segmentation, positive_points=clicks, view="axial", whole_volume=False)
    result = logic.apply(request, [], save_state_for_undo=editor.SaveStateForUndo)  # the model found nothing
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 2 and result.segment_ids

    editor.Undo()
    assert segmentation.GetSegmentation().GetSegmentIDs() == (painted_id,)
    np.testing.assert_array_equal(segment_mask(segmentation, painted_id, volume_node), painted)


def test_wiring_every_widget_the_module_uses_is_in_its_ui_file_and_the_tool_buttons_toggle():
    """slicer.util.childWidgetVariables gives self.ui one attribute per named widget of the .ui file: a name the
    module uses that the file lacks fails setup() with an AttributeError inside Slicer, before the panel shows."""
    import ast

    trees = [ast.parse(path.read_text()) for path in WIDGET_CLASS_SOURCES]
    used = {node.attr for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    declared = {w.get("name") for w in ElementTree.parse(UI_FILE).iter("widget")}
    assert used and not used - declared, f"not in the .ui file: {sorted(used - declared)}"
    tools = [name for name in used if name.endswith("Button") and any(
        tool in name for tool in ("Point", "box", "Scribble", "Lasso"))]
    assert len(tools) == 7
    assert all(_ui_property(_ui_widget(name), "checkable") is True for name in tools)


def test_wiring_the_delivery_timer_releases_the_gil_for_prefetch_and_an_old_slicer_is_told_before_any_install():
    """Inside Slicer the main thread holds the GIL while Qt idles (PythonQt without thread support): the worker and
    the background prefetch run only while the delivery timer's slot waits in logic.deliver_and_wait, so a prefetch
    must start that timer. On a Slicer older than the supported one, setup shows the one-line message and Install
    and Load model stop at the plan's refusal."""
    methods = _widget_methods()
    calls = {name: _called_names(f) for name, f in methods.items()}
    assert "deliver_and_wait" in calls["_deliver"]
    assert "prefetch_around" in calls["_prefetch"] and "start" in calls["_prefetch"]
    assert "unsupported_slicer_message" in calls["setup"]
    import ast

    assert "plan.blocked" in ast.unparse(methods["_install"]), "the install ignores an unsupported Slicer"
    for name in ("on_install_dependencies", "on_load_model"):
        assert "_install" in calls[name], f"{name} does not go through the install's checks"


def test_the_modality_choice_is_on_the_panel_and_stored_where_the_logic_reads_it(tmp_path):
    """The Modality combo box offers auto / CT / MR, and what the widget stores (parameters.modality) is what the
    logic reads from the scene when it prepares the volume's intensities."""
    from MedicalSAM3SlicerLib.parameters import MODALITY_CHOICES, scene_modality_override

    assert _ui_widget("modalityComboBox").get("class") == "QComboBox"
    methods = _widget_methods()
    import ast

    assert "p.modality = self.ui.modalityComboBox.currentText" in ast.unparse(methods["_store_parameters"])
    scene = new_scene()
    parameters = MedicalSAM3SlicerParameters.from_scene(scene)
    for choice, expected in zip(MODALITY_CHOICES, (None, "CT", "MR")):
        parameters.modality = choice
        assert scene_modality_override(scene) == expected


def test_wiring_a_failed_or_stopped_job_goes_on_with_the_prompts_placed_meanwhile():
    """The worker's error callback reports through logic.failure_report (a dialog only for a real failure, not for
    Stop) and then runs what the user drew meanwhile, as the success callback does."""
    import ast

    methods = _widget_methods()
    submit = ast.unparse(methods["_submit"])
    assert "on_error=self._show_error" not in submit and "_job_failed" in submit
    calls = _called_names(methods["_job_failed"])
    assert {"failure_report", "singleShot"} <= calls and "_show_error" not in calls
    assert "self._run_pending" in ast.unparse(methods["_job_failed"])


def test_wiring_a_closed_surface_segmentation_is_converted_only_after_asking_and_never_asked_twice_in_a_row():
    """The logic refuses a closed-surface segmentation unchanged; the widget asks (as the Segment Editor does) and a
    failed conversion is shown once, not offered again."""
    import ast

    source = ast.unparse(_widget_methods()["_reporting_errors"])
    handler = source[source.index("except SourceRepresentationError"):source.index("except Exception as error")]
    assert "offer_labelmap_conversion" in handler and "_reporting_errors" not in handler
    offer = (UI_FILE.parents[2] / "MedicalSAM3SlicerWidgets" / "labelmap_conversion.py").read_text()
    assert offer.index("confirmYesNoDisplay") < offer.index("convert_to_labelmap(")
    assert "save_state_for_undo=segment_editor_widget.saveStateForUndo" in offer
