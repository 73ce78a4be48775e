"""One user's annotation: a slicer-core scene, the source volume, one segmentation and the bridge's logic.

Everything is decided by :class:`MedicalSAM3SlicerLib.logic.MedicalSAM3SlicerLogic`, as in the Slicer module: the web
layer reads the page's inputs, calls ``prepare`` on the event-loop thread (MRML), ``predict`` on the one model thread
(no MRML; the event loop keeps serving the views meanwhile) and ``apply`` back on the event-loop thread. Clicks are
Slicer's own markups placement (the interaction node in Place mode) into the bridge's prompt point lists
(:func:`MedicalSAM3SlicerLib.prompt_nodes.prompt_node`).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import slicer

from medsam3.errors import Cancelled, MedSam3Error
from MedicalSAM3SlicerLib import dicom_seg_export, exports, prompt_nodes, segment_io
from MedicalSAM3SlicerLib.logic import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.slice_view_interaction import Tool, display_to_world, keep_box

# The page's mouse tools: "off" (the views pan / zoom / scroll), + / - point (Slicer's markups placement), and the
# gestures drawn on a slice view (:mod:`.gestures`): (bridge tool, positive)
GESTURE_TOOLS = {"box": (Tool.BOX, True), "scribble+": (Tool.SCRIBBLE, True), "scribble-": (Tool.SCRIBBLE, False),
                 "lasso+": (Tool.LASSO, True), "lasso-": (Tool.LASSO, False)}


class Busy(MedSam3Error):
    """A request while the model works (the page disables its buttons meanwhile)."""


def volume_files(path: Path) -> list[str]:
    """The files of one image: the file itself, or every file of a DICOM folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise MedSam3Error(f"{path} holds no files: give a NIfTI / NRRD file or a DICOM folder.")
        return files
    return [str(path)]


class Annotation:
    """The scene of one page: load, prompt, undo / redo, stop, export. ``on_change()`` is called (on the event-loop
    thread) whenever what the page shows (segments, status, progress, busy) changed."""

    def __init__(self, slicer_app, backend, on_change: Callable[[], None] = lambda: None):
        self.app = slicer_app
        self.scene = slicer_app.scene
        slicer.mrmlScene = self.scene  # the bridge reads the global scene (logic.stale_reason), as in Slicer
        self.logic = MedicalSAM3SlicerLogic(backend)
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medsam3-web-model")
        self.on_change = on_change
        self.volume_node = None
        self.segmentation_node = None
        self.dicom_files: dict[str, list[str]] = {}  # volume node id -> the DICOM series it was read from
        self.images: dict[str, object] = {}  # volume node id -> its own segmentation node (None until first shown)
        self.selected_segment: str | None = None
        self.text = ""
        self.whole_volume = True
        self.tool = "off"  # "off", "positive" / "negative" (points), a GESTURE_TOOLS key, "paint" or "erase"
        self.busy = False
        self.loading_model = False
        self.status = "Type what to segment, or choose + Point and click inside it."
        self.progress: tuple[int, int] | None = None
        self.last_timing: dict[str, float] = {}
        self._stop = threading.Event()
        self._placed_at = 0.0
        self._tasks: set[asyncio.Task] = set()  # running point jobs (the loop keeps only weak references to tasks)
        self.points = {kind: prompt_nodes.prompt_node(self.scene, kind) for kind in ("positive", "negative")}
        for node in self.points.values():
            node.SetLocked(False)  # the placement widget adds to it; the list is emptied after each run
            node.AddObserver(node.PointPositionDefinedEvent, self._on_point_placed)
        self.box = prompt_nodes.prompt_node(self.scene, "box")
        from .gestures import PromptGestureEffect

        from undo_stack import UndoStack

        self.editor = slicer_app.segmentation_editor
        self.brush_undo = UndoStack()  # the segment editor's paint / erase strokes (trame-slicer's undo commands)
        self.editor.set_undo_stack(self.brush_undo)
        self.brush_undo.index_changed.connect(self._on_brush_undo_index)
        self._history: list[str] = []  # "brush" or "model", newest last: which history Undo goes back in
        self._redo: list[str] = []
        self._replaying = False  # the page's own undo / redo (or a new image) moves the brush history, not a stroke
        self.gestures = self.editor.get_effect(PromptGestureEffect)
        self.gestures.on_gesture = self._on_gesture

    # --- the model ---------------------------------------------------------------------------------------------
    def begin_model_load(self) -> None:
        """The page is open while the model loads (the first load can take minutes): busy, with a progress bar."""
        self.busy, self.progress, self.loading_model = True, None, True
        self.status = "Loading the model… (the first time it may be downloaded)"
        self.on_change()

    def model_loaded(self, backend) -> None:
        self.logic.set_backend(backend)
        self.busy, self.loading_model = False, False
        self.status = f"Model {backend.info().model} loaded. " + (
            "Type what to segment, or choose + Point and click inside it." if self.volume_node is not None else
            "Open an image.")
        self.on_change()

    # --- files -------------------------------------------------------------------------------------------------
    def load(self, paths: list[Path]) -> None:
        """Load images: each joins the list of images with a segmentation of its own; the first is shown."""
        from trame_slicer.core.volumes_reader import VolumesReader

        nodes = []
        for path in paths:
            files = volume_files(path)
            loaded = self.app.io_manager.load_volumes(files)
            if not loaded:
                raise MedSam3Error(f"{path} could not be read as a volume: give a NIfTI / NRRD file or a DICOM folder.")
            if len(loaded) == 1 and VolumesReader.contains_dcm_volume(files):  # one series: what a DICOM SEG references
                self.dicom_files[loaded[0].GetID()] = files
            nodes.extend(loaded)
        for node in nodes:
            self.images[node.GetID()] = None
        self.show(nodes[0])

    def open_images(self, paths: list[Path]) -> None:
        """Images opened from the page: they join the list and the first is shown (a file that cannot be read
        changes nothing)."""
        self._check_ready(needs_image=False)
        self.load(paths)

    def image_list(self) -> list[dict]:
        """The loaded images as the page lists them (the current one marked)."""
        current = self.volume_node.GetID() if self.volume_node is not None else None
        return [{"id": volume_id, "name": self.scene.GetNodeByID(volume_id).GetName(), "current": volume_id == current}
                for volume_id in self.images if self.scene.GetNodeByID(volume_id) is not None]

    def switch_image(self, volume_id: str) -> None:
        """Show another loaded image with its own segments (the current one keeps its segments, hidden)."""
        self._check_ready(needs_image=False)
        node = self.scene.GetNodeByID(volume_id) if volume_id in self.images else None
        if node is None:
            raise MedSam3Error(f"There is no loaded image {volume_id!r}: open it first.")
        if node is not self.volume_node:
            self.show(node)

    def replace_image(self, paths: list[Path]) -> None:
        """Open another image in place of the current one; its segmentation leaves the scene with it (export first).
        A file that cannot be read changes nothing."""
        self._check_ready(needs_image=False)
        previous = [node for node in (self.volume_node, self.segmentation_node) if node is not None]
        self.load(paths)
        for node in previous:
            self.images.pop(node.GetID(), None)
            self.scene.RemoveNode(node)
        self.logic.close()  # forget the old volume's session and objects

    def show(self, volume_node) -> None:
        self.volume_node = volume_node
        self.app.display_manager.show_volume_in_slice_background(volume_node)
        self.app.display_manager.reset_views()
        for slice_node in self.slice_nodes().values():
            slice_node.SetSliceVisible(True)  # the 3D view shows the three planes
        if self.segmentation_node is not None and self.segmentation_node.GetScene() is self.scene:
            self.segmentation_node.SetDisplayVisibility(False)  # the other image's segments stay with it, hidden
        segmentation_node = self.images.get(volume_node.GetID())
        if segmentation_node is None:
            segmentation_node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                             f"MedicalSAM3 segmentation of {volume_node.GetName()}")
            segmentation_node.CreateDefaultDisplayNodes()
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
            self.images[volume_node.GetID()] = segmentation_node
        self.segmentation_node = segmentation_node
        segmentation_node.SetDisplayVisibility(True)
        self._replaying = True
        try:
            self.editor.set_active_segmentation(self.segmentation_node, volume_node)  # the gesture and paint effects'
        finally:
            self._replaying = False
        self._history.clear()
        self._redo.clear()
        self.set_tool(self.tool)
        self.selected_segment = None
        self.status = f"Loaded '{volume_node.GetName()}'. Type what to segment, or choose + Point and click inside it."
        self.on_change()

    def load_segments(self, path: Path) -> None:
        """Add the segments of a Slicer segmentation file (.seg.nrrd) to the current segmentation (names, colours
        and terminology kept); the last one is selected, for *Start from segment* and clicks to refine it."""
        self._check_ready()
        path = Path(path)
        if not path.name.endswith((".seg.nrrd", ".seg.nhdr")):
            raise MedSam3Error(f"{path.name} is not a Slicer segmentation: open a .seg.nrrd file.")
        loaded = self.app.io_manager.load_segmentation(path)
        try:
            source = loaded.GetSegmentation() if loaded is not None else None
            if source is None or source.GetNumberOfSegments() == 0:
                raise MedSam3Error(f"{path.name} could not be read as a segmentation, or holds no segment.")
            target = self.segmentation_node.GetSegmentation()
            before = {target.GetNthSegmentID(n) for n in range(target.GetNumberOfSegments())}
            for n in range(source.GetNumberOfSegments()):
                target.CopySegmentFromSegmentation(source, source.GetNthSegmentID(n), False)
        finally:
            if loaded is not None:
                self.scene.RemoveNode(loaded)
        added = [target.GetNthSegmentID(n) for n in range(target.GetNumberOfSegments())
                 if target.GetNthSegmentID(n) not in before]
        self.selected_segment = added[-1]
        self.status = (f"Added {len(added)} segment(s) from {path.name}. Press Start from segment, then click to "
                       "refine the selected one.")
        self.on_change()

    def set_display_preset(self, preset: str) -> None:
        """Window / level: "auto" (Slicer's automatic window, what MR wants) or one of Slicer's own CT presets
        (the Volumes module's CT_ABDOMEN, CT_LUNG, ...)."""
        display = self.volume_node.GetDisplayNode() if self.volume_node is not None else None
        if display is None:
            return
        if preset == "auto":
            display.AutoWindowLevelOn()
        elif preset in self.app.volumes_logic.GetVolumeDisplayPresetIDs():
            self.app.volumes_logic.ApplyVolumeDisplayPreset(display, preset)
        else:
            raise MedSam3Error(f"Unknown window preset {preset!r}.")

    # --- prompts -----------------------------------------------------------------------------------------------
    def slice_nodes(self) -> dict[str, object]:
        return {view.get_view_node().GetLayoutName(): view.get_view_node()
                for view in self.app.view_manager.get_slice_views()}

    def set_tool(self, tool: str | None) -> None:
        """What a left click or drag in a slice view does: + / - Point places into that list (Slicer's Place mode),
        a gesture tool draws a box / scribble / lasso, paint / erase are the segment editor's brushes."""
        tool = tool or "off"
        if tool not in ("off", "positive", "negative", "paint", "erase", *GESTURE_TOOLS):
            raise MedSam3Error(f"Unknown tool {tool!r}.")
        self.tool = tool
        if tool in ("positive", "negative"):
            self.app.markups_logic.place_node(self.points[tool], persistent=True)
        else:
            self.app.markups_logic.disable_place_mode()
        if self.editor.active_segmentation is None:
            return
        if tool in GESTURE_TOOLS:
            self.gestures.recorder.set_tool(*GESTURE_TOOLS[tool])
            self.editor.set_active_effect(self.gestures)
        elif tool in ("paint", "erase"):
            self._activate_brush(tool)
        else:
            self.editor.deactivate_effect()

    def _activate_brush(self, tool: str) -> None:
        """The segment editor's Paint / Erase (trame-slicer's effects) on the selected segment."""
        from trame_slicer.segmentation import SegmentationEffectErase, SegmentationEffectPaint

        if not self.selected_segment:
            self.editor.deactivate_effect()
            self.status = "Select a segment in the list to paint or erase in (or segment something first)."
            self.on_change()
            return
        self.editor.set_active_segment_id(self.selected_segment)
        self.editor.set_active_effect_type(SegmentationEffectPaint if tool == "paint" else SegmentationEffectErase)

    def _on_brush_undo_index(self, *_):
        """A paint or erase stroke was pushed on the segment editor's undo stack: Undo goes back in it first."""
        if not self._replaying:
            self._history.append("brush")
            self._redo.clear()

    def _on_gesture(self, slice_node, gesture) -> None:
        """A box, scribble or lasso drawn on a slice view (:mod:`.gestures`): the bridge's request, then the model."""
        try:
            self._check_ready()
            segment_id = self.selected_segment
            text = self.text if segment_id is None else None
            if gesture.tool == Tool.BOX:
                keep_box(self.box, slice_node, gesture.display_points)
                try:
                    request = self.logic.prepare(self.volume_node, self.segmentation_node, text=text, roi=self.box,
                                                 view=slice_node, whole_volume=self.whole_volume,
                                                 segment_id=segment_id)
                finally:
                    self.box.RemoveAllControlPoints()
            else:
                request = self.logic.prepare_stroke(
                    self.volume_node, self.segmentation_node, gesture.tool.value,
                    display_to_world(slice_node, gesture.display_points), slice_node, positive=gesture.positive,
                    whole_volume=self.whole_volume, segment_id=segment_id, text=text)
        except MedSam3Error as error:
            self.status = str(error)
            self.on_change()
            return
        self._placed_at = time.perf_counter()
        task = asyncio.get_event_loop().create_task(self._guarded(self._run(request, gesture.tool.value)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_point_placed(self, node, _event) -> None:
        self._placed_at = time.perf_counter()
        task = asyncio.get_event_loop().create_task(self._guarded(self.run_points()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work) -> None:
        try:
            await work
        except MedSam3Error as error:
            self.status = str(error)
            self.on_change()

    async def segment_text(self, text: str) -> None:
        self._check_ready()
        self.text = text
        view = None if self.whole_volume else self.slice_nodes().get("Red")
        request = self.logic.prepare(self.volume_node, self.segmentation_node, text=text, view=view,
                                     whole_volume=self.whole_volume)
        await self._run(request, "typed target")

    async def run_points(self) -> None:
        """Run the points placed so far (called when a point is placed, as with the module's Auto-run)."""
        if self.busy:
            return  # the placed points wait in their lists; they run after the current job
        positive, negative = self.points["positive"], self.points["negative"]
        if positive.GetNumberOfControlPoints() + negative.GetNumberOfControlPoints() == 0:
            return
        try:
            self._check_ready()
            position = [0.0, 0.0, 0.0]
            latest = positive if positive.GetNumberOfControlPoints() else negative
            latest.GetNthControlPointPositionWorld(latest.GetNumberOfControlPoints() - 1, position)
            view = prompt_nodes.slice_node_showing(position, list(self.slice_nodes().values()))
            segment_id = self.selected_segment
            request = self.logic.prepare(self.volume_node, self.segmentation_node,
                                         text=self.text if segment_id is None else None, positive_points=positive,
                                         negative_points=negative, view=view, whole_volume=self.whole_volume,
                                         segment_id=segment_id)
        finally:
            for node in (positive, negative):
                node.RemoveAllControlPoints()
        await self._run(request, "point")

    async def undo_or_redo(self, action: str) -> None:
        """Undo / redo the newest change: a paint or erase stroke (the segment editor's undo stack), or else the
        model's last change of the selected segment (the bridge's history of it)."""
        self._check_ready()
        done, pending = (self._history, self._redo) if action == "undo" else (self._redo, self._history)
        if done and done[-1] == "brush":
            self._replaying = True
            try:
                self.brush_undo.undo() if action == "undo" else self.brush_undo.redo()
            finally:
                self._replaying = False
            pending.append(done.pop())
            self.status = f"{action.capitalize()}: paint / erase stroke."
            self.on_change()
            return
        await self.segment_action(action)
        if done:
            pending.append(done.pop())

    async def segment_action(self, action: str) -> None:
        """Undo, redo or reset the selected segment (the model's own history of it, exact voxels)."""
        self._check_ready()
        if not self.selected_segment:
            raise MedSam3Error("Select a segment in the list first.")
        request = self.logic.prepare_action(action, self.volume_node, self.segmentation_node, self.selected_segment)
        await self._run(request, action)

    def stop(self) -> None:
        """Stop a whole-volume prediction between two slices; the segment stays as it was."""
        self._stop.set()

    def _check_ready(self, needs_image: bool = True) -> None:
        if self.loading_model:
            raise Busy("The model is still loading: wait for it (the bar shows it is working).")
        if self.busy:
            raise Busy("Medical SAM3 is busy: wait for it, or press Stop.")
        if needs_image and self.volume_node is None:
            raise MedSam3Error("No image is loaded: start medsam3 web with an IMAGE, or upload one.")

    async def _run(self, request, what: str) -> None:
        """The model part on the model thread, then the write here; one line of status either way."""
        self.busy, self.progress = True, None
        self._stop.clear()
        started = time.perf_counter()
        self.status = "Segmenting…"
        self.on_change()
        loop = asyncio.get_running_loop()

        def progress(done: int, total: int) -> None:  # model thread
            self.progress = (done, total)
            loop.call_soon_threadsafe(self.on_change)

        try:
            updates = await loop.run_in_executor(
                self.model_thread, lambda: self.logic.predict(request, progress=progress,
                                                              should_stop=self._stop.is_set))
        except Exception as error:  # noqa: BLE001  (one status line; the scene is unchanged)
            message, _ = self.logic.failure_report(request, error)
            self.status = message if isinstance(error, (Cancelled, MedSam3Error)) else f"Failed: {message}"
        else:
            result = self.logic.apply(request, updates)
            if result.changed and what not in ("undo", "redo"):
                self._history.append("model")
                self._redo.clear()
            if result.segment_ids:
                self.selected_segment = result.segment_ids[-1]
            done = f"Done ({what}, {time.perf_counter() - started:.1f} s)."
            self.status = " ".join(result.notes) or (done if result.changed or result.segment_ids else
                                                     f"Nothing changed ({what}).")
        finally:
            self.busy, self.progress = False, None
            if what in ("point", "box", "scribble", "lasso"):
                self.last_timing["placed_to_written_s"] = time.perf_counter() - self._placed_at
        self.on_change()
        if any(node.GetNumberOfControlPoints() for node in self.points.values()):
            await self.run_points()  # clicks placed while the model worked

    # --- segments ----------------------------------------------------------------------------------------------
    def segments(self) -> list[dict]:
        """The segment list as the page shows it (and the test endpoint reports it)."""
        if self.segmentation_node is None:
            return []
        segmentation = self.segmentation_node.GetSegmentation()
        display = self.segmentation_node.GetDisplayNode()
        rows = []
        for index in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(index)
            segment = segmentation.GetSegment(segment_id)
            colour = "#" + "".join(f"{round(c * 255):02x}" for c in segment.GetColor())
            rows.append({"id": segment_id, "name": segment.GetName(), "colour": colour,
                         "visible": bool(display.GetSegmentVisibility(segment_id)) if display else True,
                         "selected": segment_id == self.selected_segment})
        return rows

    def segment_mask(self, segment_id: str) -> np.ndarray:
        """(K, J, I) bool on the source volume's grid."""
        return segment_io.segment_mask(self.segmentation_node, segment_id, self.volume_node)

    def select(self, segment_id: str | None) -> None:
        """Prompts refine the selected segment; None: the next prompt starts a new one."""
        if segment_id is not None and self.segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
            raise MedSam3Error(f"There is no segment {segment_id!r}.")
        self.selected_segment = segment_id
        if self.tool in ("paint", "erase"):
            self._activate_brush(self.tool)
        self.on_change()

    def set_visible(self, segment_id: str, visible: bool) -> None:
        self.segmentation_node.GetDisplayNode().SetSegmentVisibility(segment_id, bool(visible))
        self.on_change()

    def export(self, kind: str, folder: Path) -> Path:
        """Write the segmentation through the bridge's writers: "seg.nrrd", "labelmap" (NIfTI + colour table) or
        "dicom-seg" (referencing the DICOM series the image was read from)."""
        if self.segmentation_node is None or self.segmentation_node.GetSegmentation().GetNumberOfSegments() == 0:
            raise MedSam3Error("There is no segment to export yet: segment something first.")
        folder.mkdir(parents=True, exist_ok=True)
        name = self.volume_node.GetName()
        stem = re.sub(r"(\.nii\.gz|\.nii|\.nrrd|\.nhdr|\.mha|\.mhd)$", "", name)
        stem = re.sub(r"[^\w.-]+", "_", stem).strip("._") or "segmentation"  # a DICOM series is named "3: CT ..."
        if kind == "seg.nrrd":
            report = exports.export_seg_nrrd(self.segmentation_node, folder / f"{stem}.seg.nrrd")
        elif kind == "labelmap":
            report = exports.export_labelmap(self.segmentation_node, self.volume_node, folder / f"{stem}.nii.gz")
        elif kind == "dicom-seg":
            report = dicom_seg_export.export_dicom_seg(self.segmentation_node, self.volume_node,
                                                       folder / f"{stem}.seg.dcm", exporter_class=None,
                                                       source_files=self.dicom_files.get(self.volume_node.GetID()))
        else:
            raise MedSam3Error(f"Unknown export {kind!r}: use seg.nrrd, labelmap or dicom-seg.")
        self.status = f"Exported {', '.join(report.exported) or 'nothing'} to {report.path.name}."
        self.on_change()
        return report.path

    def close(self) -> None:
        self._stop.set()
        self.logic.close()
        self.model_thread.shutdown(wait=False, cancel_futures=True)
