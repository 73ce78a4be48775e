"""An interactive segmentation session on one volume: objects, their prompts, their masks, undo and redo.

A session is what the Slicer module (through a backend) and the remote server hold per loaded volume. Every
change to an object's mask is returned as a :class:`MaskUpdate` covering only the bounding box of the voxels
that changed, so a client writes (or a server sends) only that region, and undo restores it exactly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import numpy as np

from .engine import Progress, SegmentationEngine, SegmentationResult, StopRequested
from ..errors import PromptError
from ..model.preprocessing import Preprocessing
from .prompts import SlicePrompt, resolve_slice_prompt
from ..geometry.slicing import SliceAxis
from ..geometry.volume import Volume


@dataclass(frozen=True)
class MaskUpdate:
    """The new voxels of an object's mask inside a box: ``mask[box] = values``.

    ``box`` is ``(k0, k1, j0, j1, i0, i1)`` (half-open, numpy [k, j, i] order); an empty update has
    ``values.size == 0``. ``slice_scores`` are the model's scores on the slices it predicted.
    """

    object_id: int
    box: tuple[int, int, int, int, int, int]
    values: np.ndarray
    slice_scores: dict[int, float] = field(default_factory=dict)
    axis: str = ""
    label: str = ""
    note: str = ""  # for the user (e.g. a typed name the model was not trained on)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        k0, k1, j0, j1, i0, i1 = self.box
        return slice(k0, k1), slice(j0, j1), slice(i0, i1)

    @property
    def is_empty(self) -> bool:
        return self.values.size == 0

    def apply_to(self, mask: np.ndarray) -> None:
        if not self.is_empty:
            mask[self.slices] = self.values


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int, int, int] | None:
    """``(k0, k1, j0, j1, i0, i1)``, half-open, of a (K, J, I) mask's true voxels; None when there are none."""
    if not mask.any():
        return None
    box = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box += [int(hits[0]), int(hits[-1]) + 1]
    return tuple(box)


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, ...] | None:
    return bounding_box(before != after)


@dataclass
class _Object:
    label: str = ""
    prompts: list[SlicePrompt] = field(default_factory=list)
    mask: np.ndarray | None = None
    undo_stack: list[tuple[MaskUpdate, list[SlicePrompt]]] = field(default_factory=list)
    redo_stack: list[tuple[MaskUpdate, list[SlicePrompt]]] = field(default_factory=list)


class SegmentationSession:
    """Objects segmented on one volume. Calls on one session are serialised by a lock."""

    def __init__(self, engine: SegmentationEngine, volume: Volume, preprocessing: Preprocessing | None = None,
                 max_undo: int = 20):
        self.engine = engine
        self.volume = volume
        self.preprocessing = preprocessing
        self.max_undo = max_undo
        self._objects: dict[int, _Object] = {}
        self._lock = threading.RLock()

    # --- objects ---------------------------------------------------------------------------------------------
    def _object(self, object_id: int, create: bool = True) -> _Object:
        if object_id not in self._objects:
            if not create:
                raise PromptError(f"There is no object {object_id} in this session.")
            self._objects[object_id] = _Object(mask=np.zeros(self.volume.array.shape, dtype=bool))
        return self._objects[object_id]

    def object_ids(self) -> list[int]:
        return sorted(self._objects)

    def mask(self, object_id: int) -> np.ndarray:
        with self._lock:
            return self._object(object_id, create=False).mask.copy()

    def new_object_id(self) -> int:
        with self._lock:
            return max(self._objects, default=0) + 1

    # --- changes ---------------------------------------------------------------------------------------------
    def _commit(self, object_id: int, box: tuple[slice, slice, slice], new_values: np.ndarray,
                prompts: list[SlicePrompt], scores: dict[int, float] | None = None, axis: str = "") -> MaskUpdate:
        """Write ``new_values`` into the object's mask inside ``box``; record how to undo the voxels that changed."""
        obj = self._object(object_id)
        old_values = obj.mask[box]
        changed = _changed_box(old_values, new_values)
        empty = np.zeros((0, 0, 0), dtype=bool)
        if changed is None:
            update = MaskUpdate(object_id, (0, 0, 0, 0, 0, 0), empty, scores or {}, axis, obj.label)
            previous = MaskUpdate(object_id, update.box, empty, {}, axis, obj.label)
        else:
            inner = tuple(slice(changed[2 * a], changed[2 * a + 1]) for a in range(3))
            starts = [part.indices(size)[0] for part, size in zip(box, obj.mask.shape)]
            absolute = tuple(value + starts[index // 2] for index, value in enumerate(changed))
            update = MaskUpdate(object_id, absolute, new_values[inner].copy(), scores or {}, axis, obj.label)
            previous = MaskUpdate(object_id, absolute, old_values[inner].copy(), {}, axis, obj.label)
            update.apply_to(obj.mask)
        obj.undo_stack.append((previous, list(obj.prompts)))
        del obj.undo_stack[:-self.max_undo]
        obj.redo_stack.clear()
        obj.prompts = prompts
        return update

    def _commit_result(self, object_id: int, result: SegmentationResult, prompts: list[SlicePrompt]) -> MaskUpdate:
        """The result's predicted slices replace the object's; its other slices stay as they are."""
        obj = self._object(object_id)
        box, visited = result.visited_box()
        new_values = np.where(visited, result.mask[box], obj.mask[box])
        return self._commit(object_id, box, new_values, prompts, result.slice_scores, result.axis.value)

    def _commit_whole(self, object_id: int, mask: np.ndarray, prompts: list[SlicePrompt]) -> MaskUpdate:
        return self._commit(object_id, (slice(None),) * 3, mask, prompts)

    def add_prompt(self, object_id: int, prompt: SlicePrompt, whole_volume: bool = False,
                   target_text: str = "", progress: Progress | None = None,
                   should_stop: StopRequested | None = None) -> MaskUpdate:
        """Add a click / box / mask to an object and predict: on the prompt's slice, or through the volume.

        Prompts on the same slice accumulate (each new click refines the last answer). With ``whole_volume`` the
        object is re-propagated from all its prompts in this view, so corrections on any slice take effect.
        ``progress(done, total)`` follows a propagation; when ``should_stop()`` turns True it stops with
        :class:`~medsam3.errors.Cancelled` and the object is left as it was.
        """
        with self._lock:
            obj = self._object(object_id)
            axis = SliceAxis.parse(prompt.axis)
            same_view = [p for p in obj.prompts if SliceAxis.parse(p.axis) == axis]
            prompts = same_view + [prompt]
            text = target_text or obj.label
            if whole_volume:
                result = self.engine.propagate(self.volume, prompts, self.preprocessing, text, on_slice=progress,
                                               should_stop=should_stop)
            else:
                index = self._slice_of(prompt)
                on_this_slice = [p for p in prompts if self._slice_of(p) == index]
                if len(on_this_slice) > 1:
                    prompt = SlicePrompt(axis, points=tuple(pt for p in on_this_slice for pt in p.points),
                                         box=next((p.box for p in reversed(on_this_slice) if p.box), None),
                                         mask=next((p.mask for p in reversed(on_this_slice) if p.mask is not None),
                                                   None), slice_index=index)
                result = self.engine.predict_slice(self.volume, prompt, self.preprocessing, text)
            return self._commit_result(object_id, result, prompts)

    def _slice_of(self, prompt: SlicePrompt) -> int:
        return resolve_slice_prompt(self.volume, prompt).slice_index

    def segment_text(self, text: str, axis: SliceAxis | str = SliceAxis.AXIAL, slice_index: int | None = None,
                     score_threshold: float = 0.5, progress: Progress | None = None,
                     should_stop: StopRequested | None = None) -> list[MaskUpdate]:
        """Each typed phrase becomes a new object: on one slice, or through the whole volume when
        ``slice_index`` is None (with ``progress`` and ``should_stop`` as in :meth:`add_prompt`). Each update's
        label is its phrase as typed; its note says when the phrase is not a name the model was trained on."""
        with self._lock:
            if slice_index is None:
                results = self.engine.propagate_text(self.volume, text, axis, self.preprocessing, score_threshold,
                                                     on_slice=progress, should_stop=should_stop)
            else:
                results = self.engine.segment_text_on_slice(self.volume, text, axis, slice_index,
                                                            self.preprocessing, score_threshold)
            updates = []
            for result in results:
                object_id = self.new_object_id()
                obj = self._object(object_id)
                obj.label = result.phrase
                update = self._commit_result(object_id, result, [])
                updates.append(replace(update, note=result.note) if result.note else update)
            return updates

    def set_mask(self, object_id: int, mask: np.ndarray, label: str = "") -> MaskUpdate:
        """Start an object from an existing segment (its prompts are cleared)."""
        mask = np.asarray(mask).astype(bool)
        if mask.shape != self.volume.array.shape:
            raise PromptError(f"The starting mask has shape {mask.shape}; the volume has {self.volume.array.shape}.")
        with self._lock:
            obj = self._object(object_id)
            if label:
                obj.label = label
            return self._commit_whole(object_id, mask, [])

    def reset(self, object_id: int) -> MaskUpdate:
        """Clear an object's mask and prompts (undoable)."""
        with self._lock:
            return self._commit_whole(object_id, np.zeros(self.volume.array.shape, dtype=bool), [])

    def _swap(self, object_id: int, source: list, target: list) -> MaskUpdate:
        obj = self._object(object_id, create=False)
        if not source:
            return MaskUpdate(object_id, (0, 0, 0, 0, 0, 0), np.zeros((0, 0, 0), bool), {}, "", obj.label)
        stored, prompts = source.pop()
        current = MaskUpdate(object_id, stored.box, obj.mask[stored.slices].copy() if not stored.is_empty
                             else stored.values, {}, stored.axis, obj.label)
        target.append((current, list(obj.prompts)))
        stored.apply_to(obj.mask)
        obj.prompts = prompts
        return stored

    def undo(self, object_id: int) -> MaskUpdate:
        """Undo the object's last change; an empty update when there is nothing to undo."""
        with self._lock:
            obj = self._object(object_id, create=False)
            return self._swap(object_id, obj.undo_stack, obj.redo_stack)

    def redo(self, object_id: int) -> MaskUpdate:
        with self._lock:
            obj = self._object(object_id, create=False)
            return self._swap(object_id, obj.redo_stack, obj.undo_stack)

    def can_undo(self, object_id: int) -> bool:
        return bool(self._objects.get(object_id) and self._objects[object_id].undo_stack)

    def can_redo(self, object_id: int) -> bool:
        return bool(self._objects.get(object_id) and self._objects[object_id].redo_stack)
