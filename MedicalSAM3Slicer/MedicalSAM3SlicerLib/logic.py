"""The GUI-free logic of the MedicalSAM3Slicer module: MRML nodes in, segments out.

Scripts and batch jobs call :meth:`MedicalSAM3SlicerLogic.segment` (and ``undo``, ``redo``, ``reset``,
``start_from_segment``) and get segment IDs back::

    from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
    logic = MedicalSAM3SlicerLogic(backend)            # a medsam3 backend (in-process or remote)
    result = logic.segment(volumeNode, segmentationNode, text="liver, left kidney")      # whole volume
    result = logic.segment(volumeNode, segmentationNode, positive_points=clicksNode,
                           view=sliceNode, whole_volume=False)                            # one slice
    logic.undo(segmentationNode, result.segment_ids[0])

The GUI runs the same three steps, with the model call on its worker thread:
``request = logic.prepare(...)`` (main thread: reads MRML), ``updates = logic.predict(request)`` (any thread:
model calls only), ``result = logic.apply(request, updates)`` (main thread: writes segments).

The logic holds one backend session per source volume and one engine object per segment. The source volume is
never written to; a segment is only written inside the box an update covers.
"""

from __future__ import annotations

import numpy as np

from medsam3.transports.backend import SegmentationBackend
from medsam3.errors import Cancelled, PromptError
from medsam3.interaction.prompts import SlicePrompt, parse_text_targets, refined_target
from medsam3.interaction.session import MaskUpdate
from medsam3.geometry.slicing import SliceAxis, SliceGeometry
from medsam3.geometry.volume import Volume

from . import prompt_nodes, segment_io, slice_view_interaction
from .parameters import scene_modality_override
from .terminology import Terminology, TerminologyTable, apply_to_segment, default_table
from .volume_nodes import volume_from_node, volume_state_key
from .logic_requests import SEGMENT_ACTIONS, Request, RequestKind, SegmentationResult, _kind, _VolumeState
from .worker import DELIVERY_WAIT_SECONDS, ModelWorker
from .written_mask import WrittenMask

__all__ = ["MedicalSAM3SlicerLogic", "Request", "RequestKind", "SegmentationResult"]


PREFETCH_RADIUS = 2  # slices on each side of the one on screen
# per delivery-timer tick (30 ms) the GUI lends the prefetch this long with the GIL released; a prefetch is a
# courtesy, so the GUI keeps most of each tick (a prompt's own job gets DELIVERY_WAIT_SECONDS)
PREFETCH_WAIT_SECONDS = 0.010


class MedicalSAM3SlicerLogic:
    """Segments MRML volumes with a medsam3 backend. All MRML access happens in ``prepare`` and ``apply``."""

    def __init__(self, backend: SegmentationBackend | None = None, terminology: TerminologyTable | None = None):
        self.backend = backend
        self.terminology = terminology or default_table()
        self._states: dict[str, _VolumeState] = {}
        self._prefetcher = None
        self._generation = 0  # close() (scene closed, backend changed) starts a new generation: older results are stale
        # "CT" or "MR" overrides the modality read from the volume (DICOM, else intensities) and the scene's
        # parameter node (the module's Modality setting); None: that setting, else automatic
        self.modality: str | None = None

    # --- backend ---------------------------------------------------------------------------------------------
    def set_backend(self, backend: SegmentationBackend) -> None:
        """Use another backend (model, device or server); open sessions are closed."""
        self.close()
        self.backend = backend

    def close(self) -> None:
        """Forget every volume (the scene was closed, or the backend changed): results of requests prepared before
        are dropped by :meth:`apply`. The prefetch thread is told to stop and is not waited for."""
        self._generation += 1
        if self._prefetcher is not None:
            self._prefetcher.close()  # not joined: it stops after the slice it is encoding
            self._prefetcher = None
        for state in self._states.values():
            if state.session is not None:
                state.session.close()
        self._states.clear()

    # --- the scripting API -----------------------------------------------------------------------------------
    def segment(self, volume_node, segmentation_node, text: str | None = None, positive_points=None,
                negative_points=None, roi=None, view=None, whole_volume: bool = True,
                segment_id: str | None = None) -> SegmentationResult:
        """Segment from typed text and/or clicks and a box.

        - ``text`` alone: every comma-separated target becomes a new segment (whole volume, or only the slice
          ``view`` shows when ``whole_volume`` is False).
        - points (``positive_points`` / ``negative_points`` point lists) and/or ``roi`` (an ROI drawn on a slice
          view): one prompt on one slice for segment ``segment_id`` (a new segment, named from ``text``, when
          None); ``whole_volume`` propagates it through the volume.
        - ``view`` is the slice node the prompt was placed in (its orientation chooses axial / coronal /
          sagittal) or one of those names; default axial.
        """
        request = self.prepare(volume_node, segmentation_node, text=text, positive_points=positive_points,
                               negative_points=negative_points, roi=roi, view=view, whole_volume=whole_volume,
                               segment_id=segment_id)
        return self.apply(request, self.predict(request))

    def segment_stroke(self, volume_node, segmentation_node, kind: str, stroke_world, view, positive: bool = True,
                       whole_volume: bool = True, segment_id: str | None = None,
                       text: str | None = None) -> SegmentationResult:
        """Segment from a scribble or a lasso drawn on the slice view ``view`` (its slice node).

        ``stroke_world`` holds the stroke's points in world RAS, shape (N, 3) (the widget converts the mouse
        positions with the slice node's XYToRAS matrix). A scribble becomes points along the stroke; a lasso
        becomes a mask prompt on its voxel slice: what the segment holds there plus the outlined voxels
        (``positive``), or minus them (negative). ``segment_id`` None starts a new segment named from ``text``.
        """
        request = self.prepare_stroke(volume_node, segmentation_node, kind, stroke_world, view, positive=positive,
                                      whole_volume=whole_volume, segment_id=segment_id, text=text)
        return self.apply(request, self.predict(request))

    def undo(self, volume_node, segmentation_node, segment_id: str) -> SegmentationResult:
        """Undo the last model change of a segment (restores its voxels exactly)."""
        return self._run("undo", volume_node, segmentation_node, segment_id)

    def redo(self, volume_node, segmentation_node, segment_id: str) -> SegmentationResult:
        return self._run("redo", volume_node, segmentation_node, segment_id)

    def reset(self, volume_node, segmentation_node, segment_id: str) -> SegmentationResult:
        """Clear the segment and forget its prompts (undoable)."""
        return self._run("reset", volume_node, segmentation_node, segment_id)

    def start_from_segment(self, volume_node, segmentation_node, segment_id: str) -> SegmentationResult:
        """Continue from what a segment holds now (drawn by hand or by another tool): later prompts refine it."""
        return self._run("seed", volume_node, segmentation_node, segment_id)

    def convert_to_labelmap(self, volume_node, segmentation_node, save_state_for_undo=None) -> SegmentationResult:
        """Convert a segmentation whose segments are closed surfaces or contours (STL, OBJ, RTSTRUCT, .seg.vtm) to a
        binary labelmap on the volume's grid, so that prompts can refine it; :meth:`prepare` refuses it until then
        (:class:`~.segment_io.SourceRepresentationError`). ``save_state_for_undo`` is called first (the GUI passes
        the embedded Segment Editor's, so Ctrl+Z brings the surfaces back)."""
        segmentation = segmentation_node.GetSegmentation()
        source = segment_io.effective_source(segmentation)
        if source == segment_io.BINARY_LABELMAP or segmentation.GetNumberOfSegments() == 0:
            return SegmentationResult()
        if save_state_for_undo is not None:
            save_state_for_undo()
        segment_io.convert_to_labelmap(segmentation_node, volume_node)
        return SegmentationResult(changed=True, notes=[f"'{segmentation_node.GetName()}' was converted from "
                                                       f"{source.lower()} to a binary labelmap on the grid of "
                                                       f"'{volume_node.GetName()}'."])

    def prefetch_around(self, volume_node, slice_node, text: str | None = None,
                        radius: int = PREFETCH_RADIUS) -> bool:
        """Encode, in the background, the slice a view shows and its neighbours, so that the next clicks there
        answer at once. Only in-process backends prefetch (a server keeps its own cache); returns whether a
        request was made. A newer request replaces an older one; a click meanwhile waits for at most one slice.
        ``text`` is the typed target, which chooses the CT window exactly as it will for the click.
        Inside Slicer the prefetch thread runs only while the main thread waits: call :meth:`deliver_and_wait`
        from a timer until it returns False.
        """
        engine = getattr(self.backend, "engine", None)
        if engine is None or volume_node is None or slice_node is None:
            return False
        shown = prompt_nodes.volume_ids_shown(slice_node)
        if shown and volume_node.GetID() not in shown:
            return False  # the view shows another volume: a click there is refused (prompt_nodes.check_view_shows)
        from medsam3.interaction.prefetch import PrefetchRequest, SlicePrefetcher

        volume = self._state(volume_node).volume
        axis = prompt_nodes.axis_from_slice_node(volume, slice_node)
        index = prompt_nodes.slice_index_from_slice_node(volume, slice_node, axis)
        phrases = parse_text_targets(text) if text and text.strip() else []
        target = self.terminology.resolve(phrases[0]).model_text if len(phrases) == 1 else ""
        if self._prefetcher is None or self._prefetcher.engine is not engine:
            if self._prefetcher is not None:
                self._prefetcher.close()
            self._prefetcher = SlicePrefetcher(engine)
        self._prefetcher.request(PrefetchRequest(volume, axis, index, radius, target_text=target))
        return True

    def cancel_prefetch(self) -> None:
        """Stop the background prefetch after the slice it is encoding (the user left the module)."""
        if self._prefetcher is not None:
            self._prefetcher.cancel()

    def wait_for_prefetch(self, timeout: float | None = None) -> bool:
        """Wait (with the GIL released) until the background prefetch is idle; returns whether it is."""
        return self._prefetcher is None or self._prefetcher.wait_idle(timeout)

    def deliver_and_wait(self, worker: ModelWorker, wait: float = DELIVERY_WAIT_SECONDS,
                         prefetch_wait: float = PREFETCH_WAIT_SECONDS) -> bool:
        """The GUI's delivery-timer slot: deliver finished model jobs, waiting up to ``wait`` seconds for one while
        the worker is busy, else up to ``prefetch_wait`` seconds for the background prefetch. Both waits release
        the GIL, which is what lets the worker and the prefetcher run at all inside Slicer (see :mod:`.worker`).
        Returns whether model work or a prefetch is still under way: keep calling it (keep the timer running)
        while it is True, also after :meth:`prefetch_around`.
        """
        if worker.busy:
            worker.deliver_finished(wait)
        elif prefetch_wait > 0:
            self.wait_for_prefetch(min(wait, prefetch_wait))
        return worker.busy or not self.wait_for_prefetch(0)

    def _run(self, action, volume_node, segmentation_node, segment_id) -> SegmentationResult:
        request = self.prepare_action(action, volume_node, segmentation_node, segment_id)
        return self.apply(request, self.predict(request))

    # --- step 1: read MRML (main thread) ---------------------------------------------------------------------
    def memory_held(self) -> dict[str, int]:
        """Bytes the logic holds: the private copies of the volumes (one per volume still in the scene, for the
        model thread) and what it remembers of the segments it wrote (their bounding boxes)."""
        states = list(self._states.values())
        return {"volume copies": sum(state.volume.array.nbytes for state in states),
                "written masks": sum(mask.nbytes for state in states for mask in state.written.values())}

    def _state(self, volume_node) -> _VolumeState:
        for volume_id, old in list(self._states.items()):  # volumes removed from the scene: free their copies
            if old.node is not None and old.node.GetScene() is None:
                if old.session is not None:
                    old.session.close()
                del self._states[volume_id]
        modality = self.modality or scene_modality_override(volume_node.GetScene())
        key = (*volume_state_key(volume_node), modality)
        state = self._states.get(volume_node.GetID())
        if state is None or state.key != key or state.node is not volume_node:
            if state is not None and state.session is not None:
                state.session.close()
            state = _VolumeState(key, volume_from_node(volume_node, modality), node=volume_node)
            self._states[volume_node.GetID()] = state
        return state

    def _base_request(self, action, volume_node, segmentation_node, segment_id=None) -> Request:
        if segmentation_node is None:
            raise PromptError("Choose or create a segmentation to write the result into.")
        state = self._state(volume_node)
        segment_io.bind_to_volume(segmentation_node, volume_node)
        request = Request(action, state, volume_node.GetID(), segmentation_node.GetID(), segment_id,
                          volume_node=volume_node, segmentation_node=segmentation_node,
                          image=volume_node.GetImageData(), generation=self._generation)
        if segment_id is not None:
            if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
                raise PromptError(f"There is no segment {segment_id!r} in '{segmentation_node.GetName()}'.")
            request.object_id = state.objects.get((segmentation_node.GetID(), segment_id))
            key = (segmentation_node.GetID(), segment_id)
            untouched = state.written_time.get(key) == segment_io.labelmap_modified_time(segmentation_node, segment_id)
            if action in ("prompt", "reset") and not untouched:
                # A segment the model has not seen, or edited by hand since the model last wrote it: the model
                # starts from its current voxels, so nothing drawn is lost and undo returns to the drawing.
                mask = segment_io.segment_mask(segmentation_node, segment_id, volume_node)
                written = state.written.get(request.object_id)
                if (written is None and mask.any()) or (written is not None and not written.equals(mask)):
                    request.seed_mask = mask
        return request

    def prepare_action(self, action: str, volume_node, segmentation_node, segment_id: str) -> Request:
        """An undo / redo / reset / start-from-segment request for one segment."""
        action = _kind(action)
        if action not in SEGMENT_ACTIONS:
            raise ValueError(f"{action.value!r} is not an action on one segment: use one of "
                             f"{', '.join(kind.value for kind in SEGMENT_ACTIONS)}.")
        request = self._base_request(action, volume_node, segmentation_node, segment_id)
        if action == "seed":
            request.seed_mask = segment_io.segment_mask(segmentation_node, segment_id, volume_node)
        return request

    def prepare(self, volume_node, segmentation_node, text=None, positive_points=None, negative_points=None,
                roi=None, view=None, whole_volume=True, segment_id=None) -> Request:
        """Read the nodes and build the engine request (call on the main thread)."""
        has_geometric_prompt = any(node is not None and (node.GetNumberOfControlPoints() > 0)
                                   for node in (positive_points, negative_points, roi))
        action = "prompt" if has_geometric_prompt else "text"
        if action == "text" and not (text and text.strip()):
            raise PromptError("Nothing to segment from: type what to segment, click on the object or draw a box.")
        if view is not None and not isinstance(view, (str, SliceAxis)):
            prompt_nodes.check_view_shows(volume_node, view)  # before anything is read or changed
        request = self._base_request(action, volume_node, segmentation_node, segment_id)
        volume = request.state.volume
        request.axis = self._axis(volume, view)
        request.whole_volume = bool(whole_volume)
        if action == "prompt":
            refined_target(text)
        if text:
            request.terminologies = [self.terminology.resolve(phrase) for phrase in parse_text_targets(text)]
        if action == "prompt":
            request.prompt = prompt_nodes.slice_prompt(volume, request.axis, positive_points, negative_points, roi)
        elif not whole_volume:
            if view is None or isinstance(view, (str, SliceAxis)):
                raise PromptError("'This slice' needs the slice view the text applies to.")
            request.slice_index = prompt_nodes.slice_index_from_slice_node(volume, view, request.axis)
        return request

    def prepare_stroke(self, volume_node, segmentation_node, kind: str, stroke_world, view, positive: bool = True,
                       whole_volume: bool = True, segment_id: str | None = None, text: str | None = None) -> Request:
        """Read the nodes and build the engine request of a scribble or lasso (see :meth:`segment_stroke`)."""
        if kind not in ("scribble", "lasso"):
            raise ValueError(f"Unknown stroke kind {kind!r}: use 'scribble' or 'lasso'.")
        if view is None or isinstance(view, (str, SliceAxis)):
            raise PromptError("A scribble or lasso needs the slice view it was drawn on.")
        prompt_nodes.check_view_shows(volume_node, view)
        request = self._base_request("prompt", volume_node, segmentation_node, segment_id)
        volume = request.state.volume
        request.whole_volume = bool(whole_volume)
        if text and segment_id is None:
            refined_target(text, "A scribble or lasso refines")
            request.terminologies = [self.terminology.resolve(phrase) for phrase in parse_text_targets(text)]
        if kind == "scribble":
            request.axis, _, points = slice_view_interaction.scribble_points(volume, view, stroke_world, positive)
            request.prompt = SlicePrompt(request.axis, points=points)
            return request
        request.axis, index, outlined = slice_view_interaction.lasso_slice_mask(volume, view, stroke_world)
        geometry = SliceGeometry.for_volume(volume, request.axis)
        current = np.zeros(geometry.image_shape, dtype=bool)
        if segment_id is not None:
            current = geometry.slice_image(segment_io.segment_mask(segmentation_node, segment_id, volume_node), index)
        if not positive and not (current & outlined).any():
            raise PromptError("A negative lasso removes voxels from the selected segment, and it has none inside "
                              "this outline: draw it over the part to remove.")
        mask = (current | outlined) if positive else (current & ~outlined)
        request.prompt = SlicePrompt(request.axis, mask=mask, slice_index=index)
        return request

    @staticmethod
    def _axis(volume: Volume, view) -> SliceAxis:
        if view is None:
            return SliceAxis.AXIAL
        if isinstance(view, (str, SliceAxis)):
            return SliceAxis.parse(view)
        return prompt_nodes.axis_from_slice_node(volume, view)

    # --- step 2: the model (any thread; no MRML) ---------------------------------------------------------------
    def predict(self, request: Request, progress=None, should_stop=None) -> list[MaskUpdate]:
        """Run the request on the backend session of its volume; returns the mask updates.

        ``progress(done, total)`` follows a whole-volume prediction slice by slice; ``should_stop()`` is polled
        between slices and stops it with :class:`medsam3.errors.Cancelled`, changing nothing.
        """
        state = request.state
        if state.session is None:
            if self.backend is None:
                raise PromptError("No model is loaded: choose a model (or a server) in the module's settings.")
            state.session = self.backend.open_session(state.volume)
        session = state.session
        updates = []
        if request.object_id is None and request.action in ("undo", "redo"):
            return updates  # the model never changed this segment: nothing to undo or redo
        if request.object_id is None and request.action != "text":
            request.object_id = session.new_object_id()
        object_id = request.object_id
        if request.seed_mask is not None:
            updates.append(session.set_mask(object_id, request.seed_mask))
        if request.action == "prompt":
            text = request.terminologies[0].model_text if request.terminologies else ""
            updates.append(session.add_prompt(object_id, request.prompt, request.whole_volume, text,
                                              progress=progress, should_stop=should_stop))
        elif request.action == "text":
            phrases = "; ".join(t.model_text for t in request.terminologies)  # ";": never joined as "kidney, left"
            slice_index = None if request.whole_volume else request.slice_index
            updates += session.segment_text(phrases, request.axis, slice_index, progress=progress,
                                            should_stop=should_stop)
        elif request.action == "reset":
            updates.append(session.reset(object_id))
        elif request.action == "undo":
            updates.append(session.undo(object_id))
        elif request.action == "redo":
            updates.append(session.redo(object_id))
        return updates

    # --- step 3: write MRML (main thread) ----------------------------------------------------------------------
    def apply(self, request: Request, updates: list[MaskUpdate], save_state_for_undo=None) -> SegmentationResult:
        """Write the updates into their segments, creating and naming new segments.

        ``save_state_for_undo`` is called once, before anything is written, when the updates change voxels or a
        new segment is added (also an empty one, when the model found nothing): the GUI passes the embedded Segment Editor's ``saveStateForUndo`` so that the editor's undo (Ctrl+Z) returns
        to the segmentation just before the model wrote (Slicer's own effects do the same before they modify a
        segment: qMRMLSegmentEditorWidget::saveStateForUndo, called through the effects' callback slots).
        """
        stale = self.stale_reason(request)
        if stale:  # never written into another patient's (or another volume's) segmentation
            return SegmentationResult(notes=[stale], dropped=True)
        adds_segment = request.segment_id is None and request.action != "text"  # "text" adds only what it found
        if save_state_for_undo is not None and (adds_segment or any(not update.is_empty for update in updates)):
            save_state_for_undo()

        volume_node, segmentation_node = request.volume_node, request.segmentation_node
        result = SegmentationResult(notes=[t.note for t in request.terminologies if t.note])
        if request.action == "text":
            by_text = {t.model_text: t for t in request.terminologies}
            for update in updates:
                if update.note:  # e.g. a name Medical SAM3 was not trained on (medsam3/model/vocabulary.py)
                    result.notes.append(update.note)
                terminology = by_text.get(update.label) or self.terminology.resolve(update.label)
                if update.is_empty:
                    where = "in this volume" if request.whole_volume else f"on {request.axis.value} slice " \
                                                                          f"{request.slice_index}"
                    result.notes.append(f"No {terminology.name.lower()} was found {where}; no segment was added.")
                    continue
                segment_id = self._new_segment(segmentation_node, terminology)
                request.state.objects[(segmentation_node.GetID(), segment_id)] = update.object_id
                self._write(request.state, update, segmentation_node, segment_id, volume_node, result)
            return result
        segment_id = request.segment_id
        if segment_id is None:
            terminology = request.terminologies[0] if request.terminologies else None
            segment_id = self._new_segment(segmentation_node, terminology)
        if request.object_id is not None:
            request.state.objects[(segmentation_node.GetID(), segment_id)] = request.object_id
        for update in updates:
            self._write(request.state, update, segmentation_node, segment_id, volume_node, result)
        if segment_id not in result.segment_ids:
            result.segment_ids.append(segment_id)
        return result

    def stale_reason(self, request: Request) -> str:
        """Why a finished request must not be written (one line for the status), or "" when it still belongs to
        the scene. Slicer restarts node IDs when a scene is cleared (vtkMRMLScene::Clear resets its unique-ID
        counters, Libs/MRML/Core/vtkMRMLScene.cxx), so the next patient's segmentation can carry the same ID: the
        nodes are compared as objects, the volume's voxels by their vtkImageData and its modification time."""
        import slicer

        scene = slicer.mrmlScene
        volume_node = scene.GetNodeByID(request.volume_node_id) if scene is not None else None
        segmentation_node = scene.GetNodeByID(request.segmentation_node_id) if scene is not None else None
        name = request.volume_node.GetName() if request.volume_node is not None else request.volume_node_id
        if request.generation != self._generation or volume_node is None or segmentation_node is None or \
                volume_node is not request.volume_node or segmentation_node is not request.segmentation_node:
            return (f"A result for '{name}' arrived after its scene, volume or segmentation was closed or removed; "
                    "it was dropped and nothing was written.")
        image = volume_node.GetImageData()
        if image is not request.image or image is None or image.GetMTime() != request.state.key[1]:
            return (f"The voxels of '{name}' changed while the model was running; its result was dropped: "
                    "prompt again.")
        return ""

    def failure_report(self, request: Request, error: BaseException) -> tuple[str, bool]:
        """What to tell the user when a request's model part failed: (one status line, whether it deserves an error
        dialog). Stop (:class:`~medsam3.errors.Cancelled`) and the failure of a request whose scene was closed
        meanwhile get a status line only. Either way the GUI goes on with the prompts placed meanwhile."""
        if isinstance(error, Cancelled):
            return str(error), False
        stale = self.stale_reason(request)
        if stale:
            return stale, False
        return str(error) or type(error).__name__, True

    @staticmethod
    def _write(state: _VolumeState, update: MaskUpdate, segmentation_node, segment_id, volume_node,
               result: SegmentationResult) -> None:
        segment_io.apply_update(update, segmentation_node, segment_id, volume_node)
        state.written.setdefault(update.object_id, WrittenMask(state.volume.array.shape)).apply(update)
        state.written_time[(segmentation_node.GetID(), segment_id)] = \
            segment_io.labelmap_modified_time(segmentation_node, segment_id)
        result.changed |= not update.is_empty
        if segment_id not in result.segment_ids:
            result.segment_ids.append(segment_id)

    @staticmethod
    def _new_segment(segmentation_node, terminology: Terminology | None) -> str:
        segmentation = segmentation_node.GetSegmentation()
        name = terminology.name if terminology else segmentation.GenerateUniqueSegmentID("Segment")
        segment_id = segmentation.AddEmptySegment("", name)
        if terminology is not None:
            apply_to_segment(segmentation.GetSegment(segment_id), terminology)
        return segment_id
