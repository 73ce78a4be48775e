"""The segmentation engine: volume + prompts in, masks in the volume's voxel grid out.

The engine owns every geometric step: it cuts the slice a prompt was placed on, preprocesses its intensities,
fits it into the model square (:class:`ModelFrame`), moves the prompt into model coordinates, and maps the
model's low-resolution logits back onto the slice's voxels. The network behind :class:`SegmentationModel` only
ever sees model space. Encodings are cached per (volume, view, slice, preprocessing, model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from ..model.capabilities import PROPAGATION, TEXT_ON_SLICE, TEXT_THROUGH_VOLUME, TRACKER_PROMPTS, require
from .embedding_cache import EmbeddingCache, EmbeddingKey
from ..errors import Cancelled, PromptError
from ..geometry.model_frame import ModelFrame
from ..model.families import ModelFamily, default_family
from ..model.preprocessing import Preprocessing
from .prompts import ResolvedSlicePrompt, SlicePrompt, parse_text_targets, resolve_slice_prompt
from ..model.segmentation_model import FrameMasks, MaskLogits, ModelPrompt, SegmentationModel
from ..geometry.slicing import SliceAxis, SliceGeometry
from ..model.text_protocol import DEFAULT_PROTOCOL, LabelFusion, sigmoid
from ..model.vocabulary import Vocabulary, VocabularyMatch
from ..terminology import default_table
from ..geometry.volume import Volume

log = logging.getLogger(__name__)

DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_STOP_AFTER_EMPTY_SLICES = 2
DEFAULT_VOCABULARY = object()  # SegmentationEngine's default: the family's vocabulary

Progress = Callable[[int, int], None]  # (slices done, slices in the view)
StopRequested = Callable[[], bool]


def _check_stop(should_stop: StopRequested | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled()


@dataclass
class Instance:
    """One object found for a text phrase: its voxels and the model's score."""

    mask: np.ndarray  # (K, J, I) bool
    score: float


@dataclass
class SegmentationResult:
    """A mask in the volume's voxel grid and what the model said about each slice it visited.

    Only the ``visited_slices`` of ``axis`` were predicted; voxels on other slices are not part of the answer
    (a caller merging into an existing segment replaces those slices only).
    """

    mask: np.ndarray  # (K, J, I) bool, the volume's array layout
    geometry: SliceGeometry
    slice_scores: dict[int, float] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    phrase: str = ""  # the phrase as typed (the segment's name)
    model_text: str = ""  # what the model was asked: the training class name for the phrase (vocabulary.py)
    note: str = ""  # for the user, e.g. that the phrase is not a name the model was trained on

    @property
    def axis(self) -> SliceAxis:
        return self.geometry.axis

    @property
    def visited_slices(self) -> list[int]:
        return sorted(self.slice_scores)

    def visited_box(self) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        """The smallest [k, j, i] box holding every visited slice, and which voxels of it were visited (a bool
        array broadcastable over the box)."""
        numpy_axis = 2 - self.geometry.normal_axis
        visited = self.visited_slices
        first, last = (visited[0], visited[-1] + 1) if visited else (0, 0)
        box = [slice(None)] * 3
        box[numpy_axis] = slice(first, last)
        inside = np.zeros(last - first, dtype=bool)
        inside[np.asarray(visited, dtype=int) - first] = True
        shape = [1, 1, 1]
        shape[numpy_axis] = last - first
        return tuple(box), inside.reshape(shape)

    def visited_region(self) -> np.ndarray:
        """(K, J, I) bool: the voxels this result speaks for."""
        box, inside = self.visited_box()
        region = np.zeros(self.mask.shape, dtype=bool)
        region[box] = inside
        return region


class VolumeFrames:
    """The model images and cached encodings of one volume's slices along one view (a FrameSource)."""

    def __init__(self, volume: Volume, geometry: SliceGeometry, preprocessing: Preprocessing,
                 model: SegmentationModel, cache: EmbeddingCache):
        self.volume = volume
        self.geometry = geometry
        self.preprocessing = preprocessing
        self.frame = ModelFrame.fit(geometry.image_shape, geometry.pixel_spacing, model.image_size)
        self._model = model
        self._cache = cache
        self._stack = geometry.as_slice_stack(volume.array)

    def __len__(self) -> int:
        return self.geometry.slice_count

    def image(self, index: int) -> np.ndarray:
        return self.frame.image_to_model(self.preprocessing.apply(self._stack[index]))

    def key(self, index: int, role: str = "") -> EmbeddingKey:
        return EmbeddingKey(self.volume.fingerprint, self.geometry.axis.value, int(index), self.preprocessing.key,
                            f"{self._model.name}{'/' + role if role else ''}", self._model.image_size)

    def embedding(self, index: int, compute: Callable[[np.ndarray], object], role: str = "") -> object:
        return self._cache.get_or_compute(self.key(index, role), lambda: compute(self.image(index)))

    # --- prompts and masks across the model boundary -----------------------------------------------------
    def model_prompt(self, resolved: ResolvedSlicePrompt) -> ModelPrompt:
        box = None
        if resolved.box_row_columns is not None:
            box = self.frame.slice_to_model_xy(resolved.box_row_columns).reshape(-1)  # x0, y0, x1, y1
        mask = None
        if resolved.mask is not None:
            mask = self.frame.mask_to_model_grid(resolved.mask, self._model.mask_input_size)
        return ModelPrompt(points_xy=self.frame.slice_to_model_xy(resolved.point_row_columns)
                           if len(resolved.point_row_columns) else np.zeros((0, 2)),
                           point_labels=resolved.point_labels, box_xyxy=box, mask=mask)

    def slice_mask(self, prediction: MaskLogits) -> np.ndarray:
        return self.frame.model_grid_to_slice(prediction.logits) > 0

    def slice_mask_and_scores(self, prediction: MaskLogits) -> tuple[np.ndarray, np.ndarray]:
        """The mask on the slice and the model's per-pixel probability (sigmoid of the logits)."""
        logits = self.frame.model_grid_to_slice(prediction.logits)
        return logits > 0, sigmoid(logits)


def _merge_prompts_by_slice(resolved: Iterable[ResolvedSlicePrompt]) -> dict[int, ResolvedSlicePrompt]:
    """Corrections on the same slice accumulate: every point counts; the newest box and mask win."""
    merged: dict[int, ResolvedSlicePrompt] = {}
    for prompt in resolved:
        previous = merged.get(prompt.slice_index)
        if previous is not None:
            prompt = ResolvedSlicePrompt(
                prompt.geometry, prompt.slice_index,
                np.concatenate([previous.point_row_columns, prompt.point_row_columns]),
                np.concatenate([previous.point_labels, prompt.point_labels]),
                prompt.box_row_columns if prompt.box_row_columns is not None else previous.box_row_columns,
                prompt.mask if prompt.mask is not None else previous.mask)
        merged[prompt.slice_index] = prompt
    return merged


class SegmentationEngine:
    """Slice prediction, text detection and propagation through a volume with one model and one cache."""

    def __init__(self, model: SegmentationModel, cache: EmbeddingCache | None = None,
                 vocabulary: Vocabulary | None = DEFAULT_VOCABULARY, family: ModelFamily | None = None):
        """``family`` (:mod:`medsam3.model.families`, default SAM 3) owns the preprocessing and the vocabulary;
        ``vocabulary`` maps typed phrases to the class names the model was trained on (default: the family's for an
        uncatalogued model; None: sent as typed)."""
        self.model = model
        self.cache = cache if cache is not None else EmbeddingCache()
        self.family = family or default_family()
        self.vocabulary = self.family.vocabulary(None) if vocabulary is DEFAULT_VOCABULARY else vocabulary
        self._automatic_preprocessing: dict[tuple, Preprocessing] = {}

    def frames(self, volume: Volume, axis: SliceAxis | str, preprocessing: Preprocessing | None = None,
               target_text: str = "") -> VolumeFrames:
        geometry = SliceGeometry.for_volume(volume, axis)
        return VolumeFrames(volume, geometry, preprocessing or self._preprocessing_for(volume, target_text),
                            self.model, self.cache)

    def _preprocessing_for(self, volume: Volume, target_text: str) -> Preprocessing:
        """The automatic preprocessing, chosen once per volume and target (an MRI's percentiles read the whole
        volume, which must not happen on every click)."""
        key = (volume.fingerprint, self.family.preprocessing_key(volume, target_text))
        if key not in self._automatic_preprocessing:
            self._automatic_preprocessing[key] = self.family.choose_preprocessing(volume, target_text)
        return self._automatic_preprocessing[key]

    def require(self, kind: str) -> None:
        """Refuse, before any encoding, a prompt kind the model's weights cannot serve (one line naming the model
        to choose; see :mod:`medsam3.model.capabilities`). Models without a ``capabilities`` attribute serve all."""
        require(getattr(self.model, "capabilities", None), kind, self.model.name)

    def model_text(self, phrase: str) -> VocabularyMatch:
        """What the model is asked for a typed phrase (the text path of every caller goes through here): the
        training class name (vocabulary.py); without a vocabulary, the terminology's name for the phrase ("L kidney"
        -> "left kidney", as the Slicer module sends it), else the phrase as typed."""
        if self.vocabulary is None:
            concept = default_table().lookup(phrase)
            return VocabularyMatch(phrase, concept.model_text if concept is not None else phrase)
        return self.vocabulary.match(phrase)

    def _new_result(self, frames: VolumeFrames, phrase: str = "", match: VocabularyMatch | None = None
                    ) -> SegmentationResult:
        return SegmentationResult(np.zeros(frames.volume.array.shape, dtype=bool), frames.geometry, phrase=phrase,
                                  model_text=match.model_text if match else "", note=match.note if match else "")

    @staticmethod
    def _write_slice(result: SegmentationResult, index: int, slice_mask: np.ndarray, score: float) -> None:
        result.geometry.as_slice_stack(result.mask)[index] = slice_mask
        result.slice_scores[index] = float(score)

    # --- one slice -----------------------------------------------------------------------------------------
    def predict_slice(self, volume: Volume, prompt: SlicePrompt, preprocessing: Preprocessing | None = None,
                      target_text: str = "") -> SegmentationResult:
        """Points / box / mask on one slice -> the object's mask on that slice."""
        self.require(TRACKER_PROMPTS)
        resolved = resolve_slice_prompt(volume, prompt)
        frames = self.frames(volume, prompt.axis, preprocessing, target_text)
        embedding = self.model.encoding(frames, resolved.slice_index, "prompts")
        prediction = self.model.segment_with_prompt(embedding, frames.model_prompt(resolved))
        result = self._new_result(frames)
        self._write_slice(result, resolved.slice_index, frames.slice_mask(prediction), prediction.score)
        return result

    def segment_text_on_slice(self, volume: Volume, text: str, axis: SliceAxis | str, slice_index: int,
                              preprocessing: Preprocessing | None = None,
                              score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> list[SegmentationResult]:
        """Each typed phrase -> its instances on one slice (score >= threshold), merged into one mask."""
        self.require(TEXT_ON_SLICE)
        phrases = parse_text_targets(text)
        results = []
        for phrase in phrases:
            match = self.model_text(phrase)
            frames = self.frames(volume, axis, preprocessing, match.model_text)
            index = frames.geometry.check_slice_index(slice_index)
            embedding = self.model.encoding(frames, index, "text")
            result = self._new_result(frames, phrase, match)
            best = 0.0
            slice_union = np.zeros(frames.geometry.image_shape, dtype=bool)
            for instance in self.model.segment_with_text(embedding, match.model_text):
                if instance.score < score_threshold:
                    continue
                instance_slice = frames.slice_mask(instance)
                instance_mask = np.zeros(volume.array.shape, dtype=bool)
                frames.geometry.as_slice_stack(instance_mask)[index] = instance_slice
                result.instances.append(Instance(instance_mask, instance.score))
                slice_union |= instance_slice
                best = max(best, instance.score)
            self._write_slice(result, index, slice_union, best)
            results.append(result)
        return results

    # --- through the volume ---------------------------------------------------------------------------------
    def propagate(self, volume: Volume, prompts: Sequence[SlicePrompt], preprocessing: Preprocessing | None = None,
                  target_text: str = "", stop_after_empty: int = DEFAULT_STOP_AFTER_EMPTY_SLICES,
                  on_slice: Progress | None = None, should_stop: StopRequested | None = None) -> SegmentationResult:
        """One object prompted on one or more slices of one view -> its 3D mask.

        Tracking starts at the first prompted slice and runs forward to the end of the volume, then backward to
        the start; prompts on other slices act as corrections the tracker conditions on. A direction stops early
        once the object has been absent on ``stop_after_empty`` consecutive slices past every prompted slice.
        ``on_slice(done, total)`` reports progress; ``should_stop()`` is polled between slices and raises
        :class:`Cancelled` when it returns True.
        """
        self.require(PROPAGATION)
        if not prompts:
            raise PromptError("Propagation needs at least one prompt on a slice.")
        axes = {SliceAxis.parse(p.axis) for p in prompts}
        if len(axes) != 1:
            raise PromptError("All prompts of one propagation must be placed in the same view (axial, coronal or "
                              "sagittal); start a new object for another view.")
        resolved = _merge_prompts_by_slice(resolve_slice_prompt(volume, p) for p in prompts)
        frames = self.frames(volume, axes.pop(), preprocessing, target_text)
        model_prompts = {index: frames.model_prompt(r) for index, r in resolved.items()}
        result = self._new_result(frames)
        start = min(model_prompts)
        last_prompted, first_prompted = max(model_prompts), min(model_prompts)
        for reverse in (False, True):
            stream = self.model.track(frames, model_prompts, start, reverse)
            self._collect(stream, frames, result, stop_after_empty, reverse,
                          lambda i: (i > last_prompted) if not reverse else (i < first_prompted), on_slice,
                          should_stop)
        return result

    def _collect(self, stream: Iterable[FrameMasks], frames: VolumeFrames, result: SegmentationResult,
                 stop_after_empty: int, reverse: bool, past_prompts: Callable[[int], bool],
                 on_slice: Progress | None, should_stop: StopRequested | None, object_id: int = 1) -> None:
        empty_run = 0
        for frame_masks in stream:
            _check_stop(should_stop)
            index = frame_masks.frame_index
            prediction = frame_masks.masks.get(object_id)
            slice_mask = frames.slice_mask(prediction) if prediction is not None else None
            if slice_mask is None or not slice_mask.any():
                slice_mask = np.zeros(frames.geometry.image_shape, dtype=bool)
                empty_run = empty_run + 1 if past_prompts(index) else 0
            else:
                empty_run = 0
            if index not in result.slice_scores or not reverse:
                self._write_slice(result, index, slice_mask, prediction.score if prediction is not None else 0.0)
            if on_slice is not None:
                on_slice(len(result.slice_scores), len(frames))
            if stop_after_empty and empty_run >= stop_after_empty:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
                break

    def propagate_text(self, volume: Volume, text: str, axis: SliceAxis | str = SliceAxis.AXIAL,
                       preprocessing: Preprocessing | None = None, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                       on_slice: Progress | None = None,
                       should_stop: StopRequested | None = None) -> list[SegmentationResult]:
        """Each typed phrase -> every instance through the whole volume (per-instance masks and scores, and their
        union as the phrase's mask), run with the model's text protocol (:mod:`medsam3.model.text_protocol`).

        The phrases are fused per voxel as Medical SAM3's authors fuse labels: a voxel belongs to the phrase
        whose mask holds it with the highest per-pixel probability, and to none when that is not above the
        protocol's background floor (0.5)."""
        self.require(TEXT_THROUGH_VOLUME)
        phrases = parse_text_targets(text)
        fusion = LabelFusion(volume.array.shape, getattr(self.model, "text_protocol",
                                                         DEFAULT_PROTOCOL).background_floor)
        results = []
        for label, phrase in enumerate(phrases, start=1):
            match = self.model_text(phrase)
            frames = self.frames(volume, axis, preprocessing, match.model_text)
            result = self._new_result(frames, phrase, match)
            per_object: dict[int, Instance] = {}
            for frame_masks in self.model.track_text(frames, match.model_text, 0, False):
                _check_stop(should_stop)
                index = frame_masks.frame_index
                union = np.zeros(frames.geometry.image_shape, dtype=bool)
                pixel_scores = np.zeros(frames.geometry.image_shape, dtype=np.float32)
                best = 0.0
                for object_id, prediction in frame_masks.masks.items():
                    if prediction.score < score_threshold:
                        continue
                    slice_mask, slice_scores = frames.slice_mask_and_scores(prediction)
                    instance = per_object.setdefault(object_id, Instance(np.zeros(volume.array.shape, bool), 0.0))
                    frames.geometry.as_slice_stack(instance.mask)[index] |= slice_mask
                    instance.score = max(instance.score, prediction.score)
                    union |= slice_mask
                    np.maximum(pixel_scores, slice_scores, out=pixel_scores)
                    best = max(best, prediction.score)
                self._write_slice(result, index, union, best)
                fusion.offer(label, index, union, pixel_scores, frames.geometry.as_slice_stack)
                if on_slice is not None:
                    on_slice(len(result.slice_scores), len(frames))
            result.instances = [per_object[k] for k in sorted(per_object) if per_object[k].mask.any()]
            results.append(result)
        for label, result in enumerate(results, start=1):
            kept = fusion.mask_of(label)
            taken = result.mask & ~kept
            if taken.any() and not (result.mask & kept).any():  # found, but every voxel went to another name
                winner = results[int(np.bincount(fusion.owner[taken]).argmax()) - 1].phrase
                fused = (f"Every voxel where the model found '{result.phrase}' scored higher as '{winner}' (names "
                         f"typed together share the voxels by score); type '{result.phrase}' alone for its own mask.")
                result.note = f"{result.note} {fused}".strip()
            result.mask &= kept
            for instance in result.instances:
                instance.mask &= kept
            result.instances = [instance for instance in result.instances if instance.mask.any()]
        return results

    def precompute(self, volume: Volume, axis: SliceAxis | str, slice_indices: Iterable[int],
                   preprocessing: Preprocessing | None = None, target_text: str = "",
                   should_stop: Callable[[], bool] = lambda: False) -> int:
        """Encode the given slices for clicks into the cache (in the caller's order, nearest first); returns how
        many were newly encoded. ``should_stop`` is polled between slices so a newer request can cancel this."""
        capabilities = getattr(self.model, "capabilities", None)
        if capabilities is not None and TRACKER_PROMPTS not in capabilities:
            return 0  # a model without a tracker takes no clicks: nothing to prepare
        frames = self.frames(volume, axis, preprocessing, target_text)
        misses = self.cache.misses
        for index in slice_indices:
            if should_stop():
                break
            if 0 <= index < len(frames):
                self.model.encoding(frames, index, "prompts")
        return self.cache.misses - misses
