"""The widget's model and export buttons: install the Python packages, load a model (here or on a server), export
the segments. A mixin of ``MedicalSAM3SlicerWidget`` (../MedicalSAM3Slicer.py): ``self`` is the module's widget, with
its ``ui``, ``worker`` and status helpers (``_set_busy``, ``_show_error``, ``_reporting_errors``)."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys

import qt
import slicer

from MedicalSAM3SlicerLib import dependencies, exports, pip_commands

EXPORT_FORMATS = (("Labelmap (NIfTI)", ".nii.gz"), ("Labelmap (NRRD)", ".nrrd"),
                  ("Slicer segmentation (.seg.nrrd)", ".seg.nrrd"), ("DICOM SEG", ".dcm"),
                  ("Add to training set (medsam3 finetune)", "training folder"))


class ModelPanel:
    # --- model ---------------------------------------------------------------------------------------------
    def on_load_model(self):
        if self._installing or self.worker.busy:
            return  # a second press while pip or the model is working (pip_install pumps Qt events)
        # a server needs only httpx; the model here needs torch, transformers, ...: whatever is missing is offered
        plan = dependencies.plan_installation(remote=bool(self.ui.serverUrlLineEdit.text))
        if not plan.nothing_to_do:
            if not self._install(plan, "'Load model' needs Python packages that are not installed yet.\n"):
                return
        source, device = self.ui.modelSourceLineEdit.text or None, self.ui.deviceComboBox.currentText
        server, key = self.ui.serverUrlLineEdit.text or None, self.ui.apiKeyLineEdit.text or None
        from medsam3.model import model_sources

        # the first load of a catalogue model is a download of GBs: say how much and under what licence, first
        notice = "" if server else model_sources.download_notice(source)
        if notice and not slicer.util.confirmOkCancelDisplay(notice, "Download the model"):
            return
        self.ui.modelStatusLabel.text = "Connecting..." if server else "Loading..."
        self._download_progress = None
        self._stop_requested.clear()  # Stop cancels the download; the .part file stays for the next Load
        self._set_busy(True)

        def report(progress):  # worker thread: _deliver shows it on the main thread
            self._download_progress = progress

        def load():
            from medsam3.transports.backend_choice import open_backend

            if not server:
                model_sources.download_catalogue_file(source, progress=report,
                                                      should_stop=self._stop_requested.is_set)
            self._download_progress = "loaded"
            return open_backend(model=source, device=None if device == "auto" else device, server_url=server,
                                api_key=key)

        def loaded(backend):
            self._download_progress = None
            self._set_busy(False)
            self._logic().set_backend(backend)
            info = backend.info()
            self.ui.modelStatusLabel.text = f"{info.model} ({info.transport})"
            self.ui.deviceLabel.text = info.device
            # the backend's own notes (e.g. its CPU warning, a test-only model) replace the default warning text
            if info.notes:
                self.ui.cpuWarningLabel.text = "\n".join(info.notes)
            self.ui.cpuWarningLabel.visible = bool(info.notes) or info.device.lower().startswith("cpu")

        def failed(error):
            from medsam3.errors import Cancelled

            self._download_progress = None
            if isinstance(error, Cancelled):  # Stop: no error dialog, one line saying how to go on
                self._set_busy(False)
                self.ui.modelStatusLabel.text = str(error)
                return
            self.ui.modelStatusLabel.text = "No model loaded."
            self._show_error(error)

        self.worker.submit(load, on_done=loaded, on_error=failed)
        self._delivery_timer.start()

    def _show_download_progress(self):
        """Called by the delivery timer: the download's bytes, rate and time left, in the bar and the status."""
        progress = getattr(self, "_download_progress", None)
        if progress is None or not self.worker.busy:
            return
        if progress == "loaded":
            self.ui.modelStatusLabel.text = "Loading the model (the first time it is also converted)..."
            self.ui.progressBar.setRange(0, 0)
            return
        if progress.total:
            self.ui.progressBar.setRange(0, max(1, progress.total // 1_000_000))  # MB: a QProgressBar holds int
            self.ui.progressBar.setValue(progress.done // 1_000_000)
        self.ui.modelStatusLabel.text = "Downloading the model: " + progress.describe()

    def on_install_dependencies(self):
        if self._installing or self.worker.busy:
            # pip's output pumps Qt events while pip runs (as logProcessOutput calls processEvents,
            # Base/Python/slicer/util.py, v5.10.0): a second press, or Load model, must do nothing meanwhile
            return
        plan = dependencies.plan_installation()
        if plan.nothing_to_do:
            slicer.util.infoDisplay(plan.describe())
            return
        if self._install(plan):
            slicer.util.infoDisplay("The Python packages are installed. Click 'Load model'.")

    def _install(self, plan, reason=""):
        """Show what the plan adds or replaces (with versions), and install it if the user agrees; True when done."""
        if plan.blocked:  # an unsupported Slicer: nothing is installed (supported_versions.py)
            self._show_error(RuntimeError(plan.blocked))
            return False
        if plan.restart_needed:  # a loaded torch is never replaced in the running session
            if slicer.util.confirmOkCancelDisplay(plan.describe(), "Restart needed"):
                slicer.util.restart()
            return False
        changes = None
        if plan.pip:
            try:
                with slicer.util.WaitCursor(), dependencies.pip_install_arguments(plan) as arguments:
                    self._status("Asking pip what the installation would change...")
                    changes = pip_commands.preview_changes(arguments, dependencies.installed_version)
            except pip_commands.PipError as error:  # e.g. no network, or no release fits Slicer's packages
                self._show_error(error)
                return False
        if not slicer.util.confirmOkCancelDisplay(reason + plan.describe(changes), "Install Python packages"):
            return False
        torch_logic = None
        if plan.torch:
            try:
                import PyTorchUtils

                torch_logic = PyTorchUtils.PyTorchUtilsLogic()
            except ImportError:
                pass
        self._installing = True
        self._set_busy(True)
        installed = False
        # the PyTorch extension prints pip's lines (slicer.util.logProcessOutput): shown in the status bar as they
        # come, and a failure is explained by pip's own error lines, not only "exit status 1"
        output = pip_commands.LineForwarder(sys.stdout, lambda line: self._status(line[:200]))
        try:
            with self._reporting_errors(), slicer.util.WaitCursor():
                try:
                    with contextlib.redirect_stdout(output):
                        dependencies.install(plan, pip_install=self._pip_install, torch_logic=torch_logic,
                                             progress=self._status)
                except subprocess.CalledProcessError as error:
                    raise RuntimeError(pip_commands.explain(error, output.tail)) from error
                importlib.invalidate_caches()  # the new packages import in this session without a restart
                installed = True
        finally:
            self._installing = False
            self._set_busy(False)
            self._status("")
        return installed

    def _pip_install(self, arguments):
        """pip install, each output line shown in the status bar (and the log) until the next one."""
        pip_commands.run_pip(["install", *arguments], on_line=print)  # print: the forwarder shows it

    def _status(self, message):
        """A status-bar message that stays until replaced (showStatusMessage with duration 0)."""
        slicer.util.showStatusMessage(message, 0)
        slicer.app.processEvents()

    # --- export --------------------------------------------------------------------------------------------
    def on_export(self):
        with self._reporting_errors():
            volume, segmentation = self._inputs()
            label, suffix = EXPORT_FORMATS[self.ui.exportFormatComboBox.currentIndex]
            if suffix == "training folder":
                self._add_to_training_set(volume, segmentation)
                return
            path = qt.QFileDialog.getSaveFileName(None, f"Export {label}", segmentation.GetName() + suffix)
            if not path:
                return
            if suffix == ".seg.nrrd":
                report = exports.export_seg_nrrd(segmentation, path)
            elif suffix == ".dcm":
                from MedicalSAM3SlicerLib.dicom_seg_export import export_dicom_seg  # or QuantitativeReporting's

                report = export_dicom_seg(segmentation, volume, path)
            else:
                report = exports.export_labelmap(segmentation, volume, path)
            message = f"Wrote {report.path} with: {', '.join(report.exported)}."
            if report.skipped:
                message += "\nLeft out: " + "; ".join(f"{name} ({reason})" for name, reason in report.skipped)
            slicer.util.infoDisplay(message)

    def _add_to_training_set(self, volume, segmentation):
        """The volume and its named segments as a new case of a training folder (docs/finetune.md)."""
        from MedicalSAM3SlicerLib.training_set import add_to_training_set

        folder = qt.QFileDialog.getExistingDirectory(None, "Training folder for medsam3 finetune")
        if not folder:
            return
        case = add_to_training_set(volume, segmentation, folder)
        slicer.util.infoDisplay(f"Added case {case.case_id} to {folder} with: {', '.join(case.segments)}.\n"
                                f"Fine-tune on it with: medsam3 finetune {folder} --output MODEL_DIR --device cuda")
