"""The page: the views on the right (trame-slicer's remote-rendered slicer-core views), the tools on the left.

Every button calls :class:`.annotation.Annotation`; the page holds no segmentation logic. Element ids
(``medsam3-...``) are the handles the browser test uses.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from trame.widgets import html
from trame.widgets import vuetify3 as v
from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout

from medsam3.errors import MedSam3Error

from .annotation import Annotation

LAYOUT = "Axial Primary"  # axial large; 3D, coronal and sagittal beside it
WINDOWS = [{"title": "Window: automatic (MR, any)", "value": "auto"},
           *({"title": f"Window: {title}", "value": preset} for title, preset in (
               ("CT abdomen", "CT_ABDOMEN"), ("CT lung", "CT_LUNG"), ("CT bone", "CT_BONE"),
               ("CT brain", "CT_BRAIN"), ("CT air", "CT_AIR")))]

TOOLS = [("View", "off", "point-off"), ("+ Point", "positive", "point-positive"),
         ("− Point", "negative", "point-negative"), ("Box", "box", "box"),
         ("+ Scribble", "scribble+", "scribble-positive"),
         ("− Scribble", "scribble-", "scribble-negative"), ("+ Lasso", "lasso+", "lasso-positive"),
         ("− Lasso", "lasso-", "lasso-negative"), ("Paint", "paint", "paint"), ("Erase", "erase", "erase")]


def marked_view_ui(populate):
    """trame-slicer's gutter of a view (slice slider, buttons) plus a hidden mark naming the view
    (``medsam3-view-<view id>``), by which the browser test finds, e.g., the coronal view."""

    def populate_and_mark(server, view_id, view):
        populate(server, view_id, view)
        html.Span(classes=f"medsam3-view medsam3-view-{view_id}", style="display: none;")

    return populate_and_mark


class Page:
    def __init__(self, server, slicer_app, layout_manager, annotation: Annotation):
        self.server, self.state, self.ctrl = server, server.state, server.controller
        self.slicer_app = slicer_app
        self.annotation = annotation
        self.downloads: dict[str, Path] = {}  # token -> exported file (served by access.py under /medsam3/download/)
        self.export_folder = Path(tempfile.mkdtemp(prefix="medsam3-web-export-"))
        annotation.on_change = self.refresh
        self.state.update({"target": "", "whole_volume": True, "tool": "off", "segments": [], "busy": False,
                           "images": [], "image": None,
                           "window": "auto",
                           "status": annotation.status, "progress": -1, "download_url": "", "download_name": ""})
        self.state.change("target")(self._on_target)
        self.state.change("whole_volume")(self._on_whole_volume)
        self.state.change("tool")(self._on_tool)
        self.state.change("image")(self._on_image)
        self.state.change("window")(self._on_window)
        self._build(layout_manager)

    # --- state -> page -------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        a = self.annotation
        with self.state:
            self.state.segments = a.segments()
            self.state.images = a.image_list()
            self.state.image = a.volume_node.GetID() if a.volume_node is not None else None
            self.state.busy = a.busy
            self.state.status = a.status
            self.state.progress = round(100 * a.progress[0] / a.progress[1]) if a.progress and a.progress[1] else -1
        for view in self.slicer_app.view_manager.get_views():
            view.schedule_render()

    def _report(self, error: Exception) -> None:
        self.annotation.status = str(error)
        self.refresh()

    # --- page -> annotation --------------------------------------------------------------------------------------
    def _on_target(self, target, **_):
        self.annotation.text = target or ""  # names the segment a click starts, as the module's text field does

    def _on_whole_volume(self, whole_volume, **_):
        self.annotation.whole_volume = bool(whole_volume)

    def _on_window(self, window, **_):
        try:
            self.annotation.set_display_preset(window or "auto")
        except MedSam3Error as error:
            self._report(error)
        self.refresh()

    def _on_image(self, image, **_):
        if not image or (self.annotation.volume_node is not None and image == self.annotation.volume_node.GetID()):
            return
        try:
            self.annotation.switch_image(image)
        except MedSam3Error as error:
            self._report(error)  # refresh() puts the list back on the image still shown
        with self.state:
            self.state.window = "auto"

    def _on_tool(self, tool, **_):
        try:
            self.annotation.set_tool(tool)
        except MedSam3Error as error:
            self._report(error)

    async def segment_text(self):
        try:
            await self.annotation.segment_text(self.state.target)
        except MedSam3Error as error:
            self._report(error)

    async def action(self, name: str):
        try:
            if name in ("undo", "redo"):
                await self.annotation.undo_or_redo(name)
            else:
                await self.annotation.segment_action(name)
        except MedSam3Error as error:
            self._report(error)

    def _received(self, files) -> list[Path]:
        """The files a file input sent, written under this page's folder (never at a path the browser chose)."""
        from trame.app.file_upload import ClientFile

        folder = Path(tempfile.mkdtemp(prefix="medsam3-web-upload-", dir=self.export_folder))
        written = []
        for entry in files or []:
            upload = ClientFile(entry)
            name = Path(upload.name or "").name  # never a path the browser chose
            if upload.is_empty or not name or name.startswith("."):
                continue
            (folder / name).write_bytes(upload.content)
            written.append(folder / name)
        return written

    def upload(self, files):
        """Files from the page's file input (one image file, or every file of a DICOM series) replace the image."""
        written = self._received(files)
        folder = written[0].parent if written else None
        try:
            if not written:
                raise MedSam3Error("Nothing was uploaded: choose a NIfTI / NRRD file or the files of a DICOM series.")
            self.annotation.open_images([folder] if len(written) > 1 else written)
        except MedSam3Error as error:
            self._report(error)
            return
        with self.state:
            self.state.window = "auto"  # the new image starts with Slicer's automatic window

    def upload_segments(self, files):
        """A .seg.nrrd from the page: its segments join the list (to refine with Start from segment and clicks)."""
        try:
            written = self._received(files)
            if len(written) != 1:
                raise MedSam3Error("Choose one .seg.nrrd file.")
            self.annotation.load_segments(written[0])
        except MedSam3Error as error:
            self._report(error)

    def select(self, segment_id):
        self.annotation.select(segment_id or None)

    def set_visible(self, segment_id, visible):
        self.annotation.set_visible(segment_id, visible)

    def export(self, kind: str):
        try:
            path = self.annotation.export(kind, self.export_folder / uuid.uuid4().hex)
        except MedSam3Error as error:
            self._report(error)
            return
        token = uuid.uuid4().hex
        self.downloads[token] = path
        with self.state:
            self.state.download_url = f"medsam3/download/{token}"
            self.state.download_name = path.name

    # --- layout --------------------------------------------------------------------------------------------------
    def _build(self, layout_manager) -> None:
        with SinglePageWithDrawerLayout(self.server, theme="dark") as layout:
            layout.title.set_text("Medical SAM3")
            with layout.drawer as drawer:
                drawer.width = 340
                self._tools()
            layout.footer.hide()
            with layout.content:
                with html.Div(style="position: relative; width: 100%; height: calc(100vh - 64px);"):
                    layout_manager.initialize_layout_grid(layout)
        layout_manager.set_layout(LAYOUT)
        self.layout = layout

    def _tools(self) -> None:
        with html.Div(classes="pa-3 d-flex flex-column ga-2"):
            v.VSelect(v_model=("image",), items=("images",), item_title="name", item_value="id", id="medsam3-image",
                      label="Image", density="compact", hide_details=True, disabled=("busy",))
            v.VTextField(v_model=("target",), label="What to segment (e.g. liver, left kidney)", id="medsam3-target",
                         density="compact", hide_details=True, disabled=("busy",),
                         __events=["keyup"], keyup_enter=self.segment_text)
            with html.Div(classes="d-flex ga-2"):
                v.VBtn("Segment", id="medsam3-segment", click=self.segment_text, disabled=("busy",), color="primary")
                v.VBtn("Stop", id="medsam3-stop", click=self.annotation.stop, disabled=("!busy",), color="error")
            v.VSwitch(v_model=("whole_volume",), label=("whole_volume ? 'Whole volume' : 'This slice'",),
                      id="medsam3-whole-volume", density="compact", hide_details=True)
            with v.VBtnToggle(v_model=("tool",), mandatory=True, density="compact", divided=True,
                              classes="flex-wrap", style="height: auto;"):
                for label, value, element in TOOLS:
                    v.VBtn(label, value=value, id=f"medsam3-{element}", size="small")
            v.VSelect(v_model=("window",), items=("windows", WINDOWS), id="medsam3-window", density="compact",
                      hide_details=True)
            # The bar and the status keep their room when a job ends, so that nothing below them moves under
            # the mouse at the moment the user clicks (an export pressed as a job finished hit another place).
            with html.Div(style="height: 4px;"):
                v.VProgressLinear(v_if="busy", model_value=("progress",), indeterminate=("progress < 0",),
                                  id="medsam3-progress")
            html.Div("{{ status }}", id="medsam3-status", classes="text-body-2", style="min-height: 3em;")
            v.VDivider()
            with html.Div(classes="d-flex ga-2"):
                v.VBtn("Undo", id="medsam3-undo", click=(self.action, "['undo']"), disabled=("busy",),
                       density="compact")
                v.VBtn("Redo", id="medsam3-redo", click=(self.action, "['redo']"), disabled=("busy",),
                       density="compact")
                v.VBtn("New segment", id="medsam3-new-segment", click=(self.select, "['']"), density="compact")
            v.VBtn("Start from segment", id="medsam3-start-from-segment", click=(self.action, "['seed']"),
                   disabled=("busy",), density="compact")
            with v.VList(density="compact", id="medsam3-segments"):
                with v.VListItem(v_for="s in segments", key="s.id", active=("s.selected",),
                                 click=(self.select, "[s.id]"), classes="medsam3-segment"):
                    with html.Div(classes="d-flex align-center ga-2"):
                        html.Span(style=("{background: s.colour, width: '14px', height: '14px', "
                                         "display: 'inline-block', borderRadius: '3px'}",))
                        html.Span("{{ s.name }}", classes="medsam3-segment-name")
                        v.VSpacer()
                        v.VCheckboxBtn(model_value=("s.visible",), density="compact",
                                       update_modelValue=(self.set_visible, "[s.id, $event]"), click_stop=True)
            v.VDivider()
            with html.Div(classes="d-flex flex-wrap ga-2"):
                v.VBtn(".seg.nrrd", id="medsam3-export-seg", click=(self.export, "['seg.nrrd']"), density="compact")
                v.VBtn("Labelmap", id="medsam3-export-labelmap", click=(self.export, "['labelmap']"),
                       density="compact")
                v.VBtn("DICOM SEG", id="medsam3-export-dicom-seg", click=(self.export, "['dicom-seg']"),
                       density="compact")
            v.VFileInput(label="Open an image (NIfTI, NRRD, DICOM files)", id="medsam3-upload", multiple=True,
                         density="compact", hide_details=True, disabled=("busy",), prepend_icon="mdi-folder-open",
                         change=f"trigger('{self.ctrl.trigger_name(self.upload)}', [$event.target.files])")
            v.VFileInput(label="Open segments (.seg.nrrd)", id="medsam3-upload-segments", density="compact",
                         hide_details=True, disabled=("busy",), prepend_icon="mdi-shape-plus", accept=".nrrd,.nhdr",
                         change=f"trigger('{self.ctrl.trigger_name(self.upload_segments)}', [$event.target.files])")
            html.A("Download {{ download_name }}", v_if="download_url", href=("download_url",),
                   download=("download_name",), id="medsam3-download")
