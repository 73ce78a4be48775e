"""The widget's model and export buttons: install the Python packages, load a model (here or on a server), export
the segments. A mixin of ``MedicalSAM3SlicerWidget`` (../MedicalSAM3Slicer.py): ``self`` is the module's widget, with
its ``ui``, ``worker`` and status helpers (``_set_busy``, ``_show_error``, ``_reporting_errors``)."""

from __future__ import annotations

import qt
import slicer

from MedicalSAM3SlicerLib import dependencies, exports

EXPORT_FORMATS = (("Labelmap (NIfTI)", ".nii.gz"), ("Labelmap (NRRD)", ".nrrd"),
                  ("Slicer segmentation (.seg.nrrd)", ".seg.nrrd"), ("DICOM SEG", ".dcm"))


class ModelPanel:
    # --- model ---------------------------------------------------------------------------------------------
    def on_load_model(self):
        if self._installing or self.worker.busy:
            return  # a second press while pip or the model is working (pip_install pumps Qt events)
        plan = dependencies.plan_installation()
        if plan.blocked:
            self._show_error(RuntimeError(plan.blocked))
            return
        if not self.ui.serverUrlLineEdit.text and plan.torch:
            self._show_error(RuntimeError("PyTorch is not installed yet: click 'Install dependencies...' first."))
            return
        source, device = self.ui.modelSourceLineEdit.text or None, self.ui.deviceComboBox.currentText
        server, key = self.ui.serverUrlLineEdit.text or None, self.ui.apiKeyLineEdit.text or None
        self.ui.modelStatusLabel.text = "Connecting..." if server else "Loading (downloads on first use)..."
        self._set_busy(True)

        def load():
            from medsam3.transports.backend_choice import open_backend

            return open_backend(model=source, device=None if device == "auto" else device, server_url=server,
                                api_key=key)

        def loaded(backend):
            self._set_busy(False)
            self._logic().set_backend(backend)
            info = backend.info()
            self.ui.modelStatusLabel.text = f"{info.model} ({info.transport})"
            self.ui.deviceLabel.text = info.device
            # the backend's own notes (e.g. its CPU warning, a test-only model) replace the default warning text
            if info.notes:
                self.ui.cpuWarningLabel.text = "\n".join(info.notes)
            self.ui.cpuWarningLabel.visible = bool(info.notes) or info.device.lower().startswith("cpu")

        self.worker.submit(load, on_done=loaded, on_error=self._show_error)
        self._delivery_timer.start()

    def on_install_dependencies(self):
        if self._installing or self.worker.busy:
            # slicer.util.pip_install pumps Qt events while pip runs (logProcessOutput calls processEvents,
            # Base/Python/slicer/util.py, v5.10.0): a second press, or Load model, must do nothing meanwhile
            return
        plan = dependencies.plan_installation()
        if plan.blocked:  # an unsupported Slicer: nothing is installed (supported_versions.py)
            self._show_error(RuntimeError(plan.blocked))
            return
        if plan.nothing_to_do:
            slicer.util.infoDisplay(plan.describe())
            return
        if not slicer.util.confirmOkCancelDisplay(plan.describe(), "Install Python packages"):
            return
        torch_logic = None
        if plan.torch:
            try:
                import PyTorchUtils

                torch_logic = PyTorchUtils.PyTorchUtilsLogic()
            except ImportError:
                pass
        self._installing = True
        self._set_busy(True)
        try:
            with self._reporting_errors(), slicer.util.WaitCursor():
                dependencies.install(plan, pip_install=slicer.util.pip_install, torch_logic=torch_logic,
                                     progress=lambda message: slicer.util.showStatusMessage(message, 3000))
                slicer.util.infoDisplay("The Python packages are installed. Click 'Load model'.")
        finally:
            self._installing = False
            self._set_busy(False)

    # --- export --------------------------------------------------------------------------------------------
    def on_export(self):
        with self._reporting_errors():
            volume, segmentation = self._inputs()
            label, suffix = EXPORT_FORMATS[self.ui.exportFormatComboBox.currentIndex]
            path = qt.QFileDialog.getSaveFileName(None, f"Export {label}", segmentation.GetName() + suffix)
            if not path:
                return
            if suffix == ".seg.nrrd":
                report = exports.export_seg_nrrd(segmentation, path)
            elif suffix == ".dcm":
                report = exports.export_dicom_seg(segmentation, volume, path)
            else:
                report = exports.export_labelmap(segmentation, volume, path)
            message = f"Wrote {report.path} with: {', '.join(report.exported)}."
            if report.skipped:
                message += "\nLeft out: " + "; ".join(f"{name} ({reason})" for name, reason in report.skipped)
            slicer.util.infoDisplay(message)
