"""MedicalSAM3Slicer: segment CT and MRI with Medical SAM3 from typed text, clicks and boxes.

This file is the thin Slicer layer: the module description, the widget built from
``Resources/UI/MedicalSAM3Slicer.ui`` (its model and export buttons in ``MedicalSAM3SlicerWidgets.model_panel``).
The in-Slicer self-test is ``Testing/Python/MedicalSAM3SlicerSelfTest.py``. Everything else lives in ``MedicalSAM3SlicerLib``
(MRML <-> engine, importable without Qt) and the ``medsam3`` engine package.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

# Only torch-free parts of the library are imported here, so the module loads (and offers to install its
# dependencies) in a Slicer that has no torch yet; the logic is imported when it is first needed.
from MedicalSAM3SlicerLib.keyboard_shortcuts import SHORTCUTS
from MedicalSAM3SlicerLib.parameters import MODALITY_CHOICES, MedicalSAM3SlicerParameters
from MedicalSAM3SlicerLib.segment_io import SourceRepresentationError
from MedicalSAM3SlicerLib.slice_view_interaction import Tool, tool_must_yield
from MedicalSAM3SlicerLib.supported_versions import unsupported_slicer_message
from MedicalSAM3SlicerLib.worker import ModelWorker
from MedicalSAM3SlicerWidgets.labelmap_conversion import offer_labelmap_conversion
from MedicalSAM3SlicerWidgets.model_panel import EXPORT_FORMATS, ModelPanel
from MedicalSAM3SlicerWidgets.prompt_tools import PromptTools

API_KEY_SETTING = "MedicalSAM3Slicer/ApiKey"
DOCUMENTATION_URL = "https://github.com/MedicalSAM3Slicer/SlicerMedicalSAM3/blob/main/docs/slicer.md"
DEVICES = ("auto", "cuda", "mps", "cpu")
DELIVERY_INTERVAL_MS = 30
PREFETCH_DELAY_MS = 400  # a view must rest this long before its neighbourhood is encoded


class MedicalSAM3Slicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Medical SAM3"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "Markups"]
        self.parent.contributors = ["MedicalSAM3Slicer developers"]
        self.parent.helpText = (
            "Segment CT and MRI with Medical SAM3: type targets ('liver, left kidney'), click inside or outside an "
            "object, or draw a box, on any slice view. Results are Slicer segments with standard terminology, "
            f'editable in the embedded Segment Editor. See the <a href="{DOCUMENTATION_URL}">documentation</a>.')
        self.parent.acknowledgementText = "Built on 3D Slicer, SAM3 and the medsam3 engine."


def __getattr__(name):
    """``MedicalSAM3Slicer.MedicalSAM3SlicerLogic`` is the GUI-free logic of ``MedicalSAM3SlicerLib.logic``."""
    if name == "MedicalSAM3SlicerLogic":
        from MedicalSAM3SlicerLib.logic import MedicalSAM3SlicerLogic

        return MedicalSAM3SlicerLogic
    raise AttributeError(name)


class MedicalSAM3SlicerWidget(ModelPanel, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Inputs, prompt tools and model status; model calls go to one worker thread, results come back on a timer."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.parameters = None
        self.worker = None
        self.tools = None
        self._shortcuts = []
        self._installing = False
        self._entered = False  # between enter() and exit(): the module is shown
        self._run_requested = False  # Run (Ctrl+Return) pressed while the model was busy: run when it is done
        self._editor_node_observation = None

    # --- setup ---------------------------------------------------------------------------------------------
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/MedicalSAM3Slicer.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)

        self.worker = ModelWorker()
        self._stop_requested = threading.Event()  # set by Stop, polled by the worker between slices
        self._progress = None  # (slices done, slices in the view), written by the worker
        self._download_progress = None  # the model download's DownloadProgress, written by the worker
        self._delivery_timer = qt.QTimer()
        self._delivery_timer.setInterval(DELIVERY_INTERVAL_MS)
        self._delivery_timer.connect("timeout()", self._deliver)

        self._set_segment_editor_node()
        for device in DEVICES:
            self.ui.deviceComboBox.addItem(device)
        for modality in MODALITY_CHOICES:
            self.ui.modalityComboBox.addItem(modality)
        for label, _ in EXPORT_FORMATS:
            self.ui.exportFormatComboBox.addItem(label)
        self.ui.apiKeyLineEdit.text = qt.QSettings().value(API_KEY_SETTING, "")

        self.ui.sourceVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._on_source_volume_changed)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._on_segmentation_changed)
        self.ui.segmentTextButton.connect("clicked()", self.on_segment_text)
        self.ui.textLineEdit.connect("returnPressed()", self.on_segment_text)
        self.ui.runButton.connect("clicked()", self.on_run_prompts)
        self.ui.stopButton.connect("clicked()", self.on_stop)
        self.tools = PromptTools(
            {"positive_point": self.ui.positivePointButton, "negative_point": self.ui.negativePointButton,
             "box": self.ui.boxButton, "positive_scribble": self.ui.positiveScribbleButton,
             "negative_scribble": self.ui.negativeScribbleButton, "positive_lasso": self.ui.positiveLassoButton,
             "negative_lasso": self.ui.negativeLassoButton}, self.ui.segmentEditorWidget, self._run_pending)
        self.ui.undoButton.connect("clicked()", lambda: self._segment_action("undo"))
        self.ui.redoButton.connect("clicked()", lambda: self._segment_action("redo"))
        self.ui.resetButton.connect("clicked()", lambda: self._segment_action("reset"))
        self.ui.startFromSegmentButton.connect("clicked()", lambda: self._segment_action("seed"))
        self.ui.newSegmentButton.connect("clicked()", lambda: self.ui.segmentEditorWidget.setCurrentSegmentID(""))
        self.ui.loadModelButton.connect("clicked()", self.on_load_model)
        self.ui.installDependenciesButton.connect("clicked()", self.on_install_dependencies)
        self.ui.exportButton.connect("clicked()", self.on_export)
        self.ui.apiKeyLineEdit.connect("editingFinished()",
                                       lambda: qt.QSettings().setValue(API_KEY_SETTING, self.ui.apiKeyLineEdit.text))
        for widget, signal in ((self.ui.textLineEdit, "textChanged(QString)"),
                               (self.ui.autoRunCheckBox, "toggled(bool)"),
                               (self.ui.wholeVolumeRadioButton, "toggled(bool)"),
                               (self.ui.modelSourceLineEdit, "textChanged(QString)"),
                               (self.ui.deviceComboBox, "currentIndexChanged(int)"),
                               (self.ui.modalityComboBox, "currentIndexChanged(int)"),
                               (self.ui.serverUrlLineEdit, "textChanged(QString)")):
            widget.connect(signal, self._store_parameters)
        interaction_node = slicer.app.applicationLogic().GetInteractionNode()
        if interaction_node is not None:  # a markups placement started meanwhile releases the armed tool
            self.addObserver(interaction_node, vtk.vtkCommand.ModifiedEvent, self._on_interaction_node_modified)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self._on_scene_closing)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self._on_scene_closed)
        # a scene loaded (imported) later brings its own parameter nodes: show them (as SegmentEditor.py does)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self._on_scene_imported)
        self._prefetch_timer = qt.QTimer()
        self._prefetch_timer.setSingleShot(True)
        self._prefetch_timer.setInterval(PREFETCH_DELAY_MS)
        self._prefetch_timer.connect("timeout()", self._prefetch)
        self._scrolled_slice_node = None
        for slice_node in self._slice_nodes():
            self.addObserver(slice_node, vtk.vtkCommand.ModifiedEvent,
                             lambda node, event: self._on_slice_view_moved(node))
        self._load_parameters()
        unsupported = unsupported_slicer_message()
        if unsupported:  # an older Slicer: say so once, here, instead of failing halfway through an install
            self.ui.modelStatusLabel.text = unsupported
            self.ui.modelStatusLabel.wordWrap = True

    # --- entering and leaving the module ---------------------------------------------------------------------
    # As Slicer's own Segment Editor module (Modules/Scripted/SegmentEditor/SegmentEditor.py, v5.10.0): keyboard
    # shortcuts are installed in enter() and removed in exit(), and exit() deactivates the editor's effect and
    # drops its view observations. The keys (MedicalSAM3SlicerLib.keyboard_shortcuts) act only while this module
    # is shown, and none is a key of the slice views or of the embedded Segment Editor.
    def enter(self):
        self._entered = True
        self._install_shortcuts()
        if slicer.util.mainWindow() is not None:  # the editor parents its shortcuts to the main window
            self.ui.segmentEditorWidget.installKeyboardShortcuts()  # 1-0 effects, Z / Ctrl+Z undo, Y redo, Escape
        self.tools.install()
        self._set_segment_editor_node()
        self._drive_editor_from_selectors()
        self.ui.segmentEditorWidget.updateWidgetFromMRML()

    def exit(self):
        self._entered = False
        self._prefetch_timer.stop()  # no background encoding for views scrolled in other modules
        if self.logic is not None:
            self.logic.cancel_prefetch()  # and the one under way stops after its current slice
        self.tools.remove()
        self._remove_shortcuts()
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.ui.segmentEditorWidget.removeViewObservations()

    def _install_shortcuts(self):
        self._remove_shortcuts()
        main_window = slicer.util.mainWindow()
        if main_window is None:  # --no-main-window: no keyboard to serve
            return
        actions = {"positive_point": self.ui.positivePointButton.toggle,
                   "negative_point": self.ui.negativePointButton.toggle, "box": self.ui.boxButton.toggle,
                   "run": self.on_run_prompts, "undo": lambda: self._segment_action("undo"),
                   "redo": lambda: self._segment_action("redo")}
        for keys, name in SHORTCUTS:  # none takes a key of the slice views or the Segment Editor
            action = actions[name]
            shortcut = qt.QShortcut(qt.QKeySequence(keys), main_window)
            shortcut.connect("activated()", action)
            self._shortcuts.append(shortcut)

    def _remove_shortcuts(self):
        # as qMRMLSegmentEditorWidget::uninstallKeyboardShortcuts: unparent (inactive at once), then delete
        for shortcut in self._shortcuts:
            shortcut.setParent(None)
            shortcut.deleteLater()
        self._shortcuts = []

    @staticmethod
    def _slice_nodes():
        """The slice nodes of the views on screen (none when Slicer runs without a main window)."""
        layout_manager = slicer.app.layoutManager()
        if layout_manager is None:
            return []
        return [layout_manager.sliceWidget(name).mrmlSliceNode() for name in layout_manager.sliceViewNames()]

    def _logic(self):
        """The logic, created on first use (importing it needs torch: see 'Install dependencies...')."""
        if self.logic is None:
            from MedicalSAM3SlicerLib.logic import MedicalSAM3SlicerLogic

            self.logic = MedicalSAM3SlicerLogic()
        return self.logic

    def _on_slice_view_moved(self, slice_node):
        """A view was scrolled: once it rests, encode the slices around it in the background."""
        if not self._entered:
            return
        self._scrolled_slice_node = slice_node
        self._prefetch_timer.start()

    def _prefetch(self):
        if self.logic is None or self.logic.backend is None or self.worker.busy or self._installing:
            return  # no model yet, or the model is answering a prompt: never compete with the user's request
        try:
            self.logic.prefetch_around(self.ui.sourceVolumeSelector.currentNode(), self._scrolled_slice_node,
                                       text=self.ui.textLineEdit.text)
            self._delivery_timer.start()  # its slot waits for the prefetch with the GIL released (logic.py)
        except Exception as error:  # a prefetch is a courtesy: a problem shows when the user actually clicks
            logging.debug("MedicalSAM3: no prefetch: %s", error)

    def cleanup(self):
        self._prefetch_timer.stop()
        self.removeObservers()
        self.tools.remove()
        self._remove_shortcuts()
        self._delivery_timer.stop()
        self.worker.shutdown(wait=False)
        if self.logic is not None:
            self.logic.close()

    # --- parameters ----------------------------------------------------------------------------------------
    def _set_segment_editor_node(self):
        """The embedded Segment Editor's own parameter node (one per scene, kept with the scene)."""
        node = slicer.mrmlScene.GetSingletonNode("MedicalSAM3Slicer", "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag("MedicalSAM3Slicer")
            node = slicer.mrmlScene.AddNode(node)
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(node)
        if self._editor_node_observation is not node:
            if self._editor_node_observation is not None:
                self.removeObserver(self._editor_node_observation, vtk.vtkCommand.ModifiedEvent,
                                    self._on_editor_node_modified)
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self._on_editor_node_modified)
            self._editor_node_observation = node

    def _on_editor_node_modified(self, node, event):
        """An effect of the embedded editor was activated: it gets the mouse, so the module's tool is released."""
        if node.GetActiveEffectName():
            self.tools.release()

    def _on_interaction_node_modified(self, node, event):
        if self.tools.armed and tool_must_yield(node):
            self.tools.release()

    def _load_parameters(self):
        self.parameters = None  # the widgets below must not write back half-loaded values
        p = MedicalSAM3SlicerParameters.from_scene(slicer.mrmlScene)
        # defaults: what the Segment Editor module works on
        editor = slicer.mrmlScene.GetSingletonNode("SegmentEditor", "vtkMRMLSegmentEditorNode")
        volume = p.source_volume or (editor.GetSourceVolumeNode() if editor is not None else None)
        segmentation = p.segmentation or (editor.GetSegmentationNode() if editor is not None else None)
        if volume is not None:
            self.ui.sourceVolumeSelector.setCurrentNode(volume)
        if segmentation is not None:
            self.ui.segmentationSelector.setCurrentNode(segmentation)
        self.ui.textLineEdit.text = p.text
        self.ui.autoRunCheckBox.checked = p.auto_run
        self.ui.wholeVolumeRadioButton.checked = p.whole_volume
        self.ui.thisSliceRadioButton.checked = not p.whole_volume
        self.ui.modelSourceLineEdit.text = p.model_source
        self.ui.deviceComboBox.currentText = p.device
        self.ui.modalityComboBox.currentText = p.modality if p.modality in MODALITY_CHOICES else "auto"
        self.ui.serverUrlLineEdit.text = p.server_url
        self.parameters = p
        p.source_volume = self.ui.sourceVolumeSelector.currentNode()
        p.segmentation = self.ui.segmentationSelector.currentNode()
        self._drive_editor_from_selectors()

    def _drive_editor_from_selectors(self):
        """The embedded editor's own selectors are hidden (.ui: segmentationNodeSelectorVisible and
        sourceVolumeNodeSelectorVisible false): it always edits what the module's selectors show, so prompts and
        the selected segment ID refer to one segmentation (segment IDs repeat across segmentations)."""
        self.ui.segmentEditorWidget.setSegmentationNode(self.ui.segmentationSelector.currentNode())
        self.ui.segmentEditorWidget.setSourceVolumeNode(self.ui.sourceVolumeSelector.currentNode())

    def _store_parameters(self, *_):
        if self.parameters is None:
            return
        p = self.parameters
        p.text = self.ui.textLineEdit.text
        p.auto_run = self.ui.autoRunCheckBox.checked
        p.whole_volume = self.ui.wholeVolumeRadioButton.checked
        p.model_source = self.ui.modelSourceLineEdit.text
        p.device = self.ui.deviceComboBox.currentText
        p.modality = self.ui.modalityComboBox.currentText  # the logic reads it from the scene (parameters.py)
        p.server_url = self.ui.serverUrlLineEdit.text

    def _on_source_volume_changed(self, node):
        if self.parameters is not None:
            self.parameters.source_volume = node
        self.ui.segmentEditorWidget.setSourceVolumeNode(node)

    def _on_segmentation_changed(self, node):
        if self.parameters is not None:
            self.parameters.segmentation = node
        self.ui.segmentEditorWidget.setSegmentationNode(node)

    def _on_scene_closing(self, *_):
        self.tools.forget_scene()

    def _on_scene_closed(self, *_):
        if self.logic is not None:
            self.logic.close()
        self.tools.forget_scene()
        self._set_segment_editor_node()
        self._load_parameters()

    def _on_scene_imported(self, *_):
        """A scene was loaded: use its parameter node and its editor node, and show what they hold."""
        self._set_segment_editor_node()
        self._load_parameters()

    # --- prompt tools (MedicalSAM3SlicerWidgets.prompt_tools) -------------------------------------------------
    def _run_pending(self):
        """Run what the user drew, in order, one request at a time (a prompt waits while the model works)."""
        if self.worker.busy or self._installing:
            return
        with self._reporting_errors():
            if self.tools.strokes:
                gesture, slice_node, world = self.tools.strokes.pop(0)
                volume, segmentation = self._inputs()
                segment_id = self.ui.segmentEditorWidget.currentSegmentID() or None
                self._submit(self._logic().prepare_stroke(
                    volume, segmentation, "lasso" if gesture.tool == Tool.LASSO else "scribble", world, slice_node,
                    positive=gesture.positive, whole_volume=self.ui.wholeVolumeRadioButton.checked,
                    segment_id=segment_id, text=self.ui.textLineEdit.text if segment_id is None else None))
            elif (self.ui.autoRunCheckBox.checked or self._run_requested) and self.tools.has_placed():
                self.on_run_prompts()

    # --- running -------------------------------------------------------------------------------------------
    def _inputs(self):
        volume = self.ui.sourceVolumeSelector.currentNode()
        segmentation = self.ui.segmentationSelector.currentNode()
        if volume is None:
            raise ValueError("Choose a source volume.")
        if segmentation is None:
            segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
            segmentation.CreateDefaultDisplayNodes()
            self.ui.segmentationSelector.setCurrentNode(segmentation)
        return volume, segmentation

    def _submit(self, request):
        """Run the model part of a request on the worker; write the result when it comes back."""
        self._set_busy(True)

        def done(updates):
            self._set_busy(False)
            with self._reporting_errors():
                # the editor's Ctrl+Z then returns to the segmentation just before this write (defect: undo
                # dropped model results); qMRMLSegmentEditorWidget::saveStateForUndo, Slicer v5.8.1 and v5.10.0
                result = self._logic().apply(request, updates,
                                             save_state_for_undo=self.ui.segmentEditorWidget.saveStateForUndo)
                self.ui.notesLabel.text = "\n".join(result.notes)
                if result.segment_ids:
                    self.ui.segmentEditorWidget.setCurrentSegmentID(result.segment_ids[-1])
            qt.QTimer.singleShot(0, self._run_pending)  # what the user drew meanwhile

        self._stop_requested.clear()
        self._progress = None

        def report(done_slices, total_slices):  # worker thread: the timer shows it on the main thread
            self._progress = (done_slices, total_slices)

        self.worker.submit(lambda: self._logic().predict(request, progress=report,
                                                         should_stop=self._stop_requested.is_set),
                           on_done=done, on_error=lambda error: self._job_failed(request, error))
        self._delivery_timer.start()

    def _job_failed(self, request, error):
        """A failed or stopped job: a status line (a dialog only for a real failure, logic.failure_report), then
        what the user drew meanwhile runs as it would after a success."""
        self._set_busy(False)
        message, dialog = self._logic().failure_report(request, error)
        self.ui.notesLabel.text = message
        if dialog:
            logging.error("MedicalSAM3Slicer: %s", error)
            slicer.util.errorDisplay(message)
        qt.QTimer.singleShot(0, self._run_pending)

    def on_stop(self):
        """Stop a running whole-volume prediction between two slices; the segment stays as it was."""
        self._stop_requested.set()

    # A request is prepared from the scene as it is when it starts (the selected segment, its voxels), so it
    # must not start before the previous result is written: while the model works the buttons are disabled, and
    # what arrives anyway (Return in the text field, the shortcuts) waits or is declined here.
    def on_segment_text(self):
        if self._installing or self.worker.busy:  # Return in the text field meanwhile (see on_install_dependencies)
            self._decline_while_busy()
            return
        with self._reporting_errors():
            volume, segmentation = self._inputs()
            views = {node.GetLayoutName(): node for node in self._slice_nodes()}
            view = None if self.ui.wholeVolumeRadioButton.checked else views.get("Red", next(iter(views.values()), None))
            request = self._logic().prepare(volume, segmentation, text=self.ui.textLineEdit.text, view=view,
                                            whole_volume=self.ui.wholeVolumeRadioButton.checked)
            self._submit(request)

    def on_run_prompts(self):
        if self._installing or self.worker.busy:  # Ctrl+Return meanwhile: the placed prompts run when it is done
            self._run_requested = not self._installing
            return
        self._run_requested = False
        with self._reporting_errors():
            volume, segmentation = self._inputs()
            # prompts refine the segment selected in the Segment Editor; "New segment" clears the selection
            segment_id = self.ui.segmentEditorWidget.currentSegmentID() or None
            request = self._logic().prepare(
                volume, segmentation, text=self.ui.textLineEdit.text if segment_id is None else None,
                positive_points=self.tools.nodes.get("positive"), negative_points=self.tools.nodes.get("negative"),
                roi=self.tools.nodes.get("box"), view=self.tools.placed_view(self._slice_nodes()),
                whole_volume=self.ui.wholeVolumeRadioButton.checked, segment_id=segment_id)
            self.tools.clear_placed()
            self._submit(request)

    def _segment_action(self, action):
        if self._installing or self.worker.busy:  # Ctrl+Alt+Z / Y meanwhile
            self._decline_while_busy()
            return
        with self._reporting_errors():
            volume, segmentation = self._inputs()
            segment_id = self.ui.segmentEditorWidget.currentSegmentID()
            if not segment_id:
                raise ValueError("Select a segment in the Segment Editor below first.")
            self._submit(self._logic().prepare_action(action, volume, segmentation, segment_id))

    # --- status --------------------------------------------------------------------------------------------
    def _deliver(self):
        self._show_download_progress()
        progress = self._progress
        if progress is not None and self.worker.busy:
            self.ui.progressBar.setRange(0, progress[1])
            self.ui.progressBar.setValue(progress[0])
        # Waiting here releases the GIL, which Slicer's main thread otherwise holds while Qt idles (PythonQt
        # runs without thread support): only then do the worker and the prefetcher run (worker.py, logic.py).
        if self.logic is not None:
            still_working = self.logic.deliver_and_wait(self.worker)
        else:
            self.worker.deliver_finished()
            still_working = self.worker.busy
        if not still_working:
            self._delivery_timer.stop()

    def _set_busy(self, busy):
        self.ui.progressBar.setRange(0, 0 if busy else 1)  # an indeterminate bar while the model works
        self.ui.progressBar.setValue(0 if busy else 1)
        for button in (self.ui.runButton, self.ui.segmentTextButton, self.ui.undoButton, self.ui.redoButton,
                       self.ui.resetButton, self.ui.startFromSegmentButton, self.ui.loadModelButton,
                       self.ui.installDependenciesButton):
            button.enabled = not busy
        self.ui.stopButton.enabled = busy and not self._installing

    def _decline_while_busy(self):
        slicer.util.showStatusMessage("Medical SAM3 is busy: try again when it is done.", 3000)

    def _show_error(self, error):
        self._set_busy(False)
        logging.error("MedicalSAM3Slicer: %s", error)
        self.ui.notesLabel.text = str(error)
        slicer.util.errorDisplay(str(error))

    @contextlib.contextmanager
    def _reporting_errors(self):
        """Show a failing step's message to the user instead of a traceback in the console."""
        try:
            yield
        except SourceRepresentationError as error:  # closed surfaces: ask, as the Segment Editor does
            try:  # a conversion Slicer cannot do is refused once, not offered again
                self.ui.notesLabel.text = offer_labelmap_conversion(
                    self._logic(), self.ui.sourceVolumeSelector.currentNode(),
                    self.ui.segmentationSelector.currentNode(), self.ui.segmentEditorWidget, error)
            except Exception as failure:
                self._show_error(failure)
        except Exception as error:
            self._show_error(error)


class MedicalSAM3SlicerTest(ScriptedLoadableModuleTest):
    """Reload and Test (developer mode) runs the self-test scenario of the installed library
    (MedicalSAM3SlicerLib.self_test_model.run_self_test), so it works in an installed extension, whose Testing/
    folder is not installed; ctest runs the same scenario from Testing/Python/MedicalSAM3SlicerSelfTest.py."""

    def runTest(self):
        from MedicalSAM3SlicerLib.self_test_model import run_self_test

        slicer.mrmlScene.Clear()
        run_self_test(slicer.mrmlScene, say=lambda message: self.delayDisplay(message,
                                                                               getattr(self, "messageDelay", 100)))
