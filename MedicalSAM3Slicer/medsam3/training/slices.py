"""Training slices made exactly as the engine makes the slices it segments, and a seeded sampler over them.

Each labelled case is cut into axial slices by the engine itself: ``SegmentationEngine.model_text`` maps the label
name to what the model is asked for (the training vocabulary and the terminology table, as for a typed prompt),
``SegmentationEngine.frames`` chooses the preprocessing for that text (the CT window a typed name would get, MRI
percentiles over the whole volume) and the model frame (aspect-true scaling into the S x S square), and
``VolumeFrames.image`` makes the model image. Labels cross into the model square through the same frame
(``ModelFrame.mask_to_model_grid``). So training sees what inference sees
(``tests/engine/training/test_training_slices.py`` compares with the engine's own images).

Each structure on a slice becomes one target instance per connected region (SAM 3 detects instances). The
sampler draws, for every step, a structure and then a slice that holds it, or with ``negative_fraction`` a slice of
the same cases without it (SAM 3's presence head learns "not here" from those); the draw depends only on the
seed and the step number, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import MedSam3Error
from ..geometry.model_frame import ModelFrame
from ..geometry.volume import Volume
from ..interaction.engine import SegmentationEngine

MAX_INSTANCES = 16  # per slice and structure; smaller regions beyond it join the last one
MIN_INSTANCE_PIXELS = 4  # regions smaller than this on the model square are dropped from the targets
NEGATIVE_FRACTION = 0.25


class TrainingDataError(MedSam3Error):
    """Labelled data that cannot be trained on as given."""


@dataclass(frozen=True)
class LabelledVolume:
    """One case: its image volume and integer labels on the same [k, j, i] grid."""

    case_id: str
    volume: Volume
    labels: np.ndarray


@dataclass(frozen=True)
class TrainingStructure:
    value: int
    name: str  # as the data names it
    prompt: str  # what the model is asked for (the engine's model_text)
    note: str = ""  # the vocabulary's note when the prompt is not a training class name


@dataclass
class _CaseSlices:
    case_id: str
    frame: ModelFrame
    levels: dict[str, np.ndarray]  # preprocessing key -> (slices, rows, columns) grey levels
    level_count: dict[str, int]
    preprocessing_of: dict[int, str]  # structure value -> the key of the preprocessing its prompt gets
    labels: np.ndarray  # (slices, rows, columns) label values in the view's orientation


@dataclass(frozen=True)
class Sample:
    case: int
    structure: int  # index into SliceSet.structures
    slice_index: int


@dataclass
class SliceSet:
    """The axial slices of some cases, per structure: which hold it and which do not."""

    structures: list[TrainingStructure]
    image_size: int
    cases: list[_CaseSlices] = field(default_factory=list)
    positives: dict[int, list[Sample]] = field(default_factory=dict)
    negatives: dict[int, list[Sample]] = field(default_factory=dict)

    @property
    def case_ids(self) -> list[str]:
        return [case.case_id for case in self.cases]

    def image(self, sample: Sample) -> np.ndarray:
        """The S x S model image, as ``VolumeFrames.image`` makes it for the structure's prompt."""
        case = self.cases[sample.case]
        key = case.preprocessing_of[self.structures[sample.structure].value]
        grey = case.levels[key][sample.slice_index]
        levels = case.level_count[key]
        grey = grey.astype(np.float32) / np.float32(levels) if levels else grey
        return case.frame.image_to_model(grey)

    def target_mask(self, sample: Sample) -> np.ndarray:
        """The structure on the slice, as a boolean S x S mask in the model square."""
        case = self.cases[sample.case]
        mask = case.labels[sample.slice_index] == self.structures[sample.structure].value
        return case.frame.mask_to_model_grid(mask, self.image_size) > 0.5

    def instances(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (T, 4) x0 y0 x1 y1 in 0..1, masks (T, S, S) bool): the structure's connected regions."""
        return instances_of(self.target_mask(sample))

    def held_out_samples(self, structure: int) -> list[Sample]:
        """Every slice holding the structure and as many evenly spaced slices without it (for Dice)."""
        positives, negatives = self.positives.get(structure, []), self.negatives.get(structure, [])
        if negatives and positives:
            chosen = np.linspace(0, len(negatives) - 1, min(len(positives), len(negatives))).round().astype(int)
            negatives = [negatives[i] for i in sorted(set(chosen.tolist()))]
        return positives + negatives


def instances_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = mask.shape[0]
    regions, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros((0, 4), dtype=np.float32), np.zeros((0, *mask.shape), dtype=bool)
    pixels = ndimage.sum_labels(mask, regions, index=np.arange(1, count + 1))
    order = [int(i) + 1 for i in np.argsort(-pixels) if pixels[i] >= MIN_INSTANCE_PIXELS]
    if not order:
        order = [int(np.argmax(pixels)) + 1]
    masks = [regions == label for label in order[:MAX_INSTANCES]]
    for label in order[MAX_INSTANCES:]:
        masks[-1] |= regions == label
    boxes = []
    for instance in masks:
        rows, columns = np.nonzero(instance)
        boxes.append([columns.min() / size, rows.min() / size, (columns.max() + 1) / size, (rows.max() + 1) / size])
    return np.asarray(boxes, dtype=np.float32), np.stack(masks)


@dataclass(frozen=True)
class _FrameOnly:
    """What ``SegmentationEngine.frames`` reads of a model: its input size and a name (no network is needed)."""

    image_size: int
    name: str = "training"
    mask_input_size: int = 0


def training_structures(names: list[tuple[int, str]]) -> list[TrainingStructure]:
    """Label (value, name) pairs -> what the model is asked for, through the engine's vocabulary and terminology
    (``SegmentationEngine.model_text``, as for a typed prompt); a name with no word in it maps to nothing and is
    refused."""
    engine = SegmentationEngine(_FrameOnly(0))
    structures = []
    for value, name in names:
        if not re.search(r"[A-Za-z]", name):
            raise TrainingDataError(f"Label {value} is named {name!r}, which maps to no structure name: name it "
                                    "as a user would type it (e.g. 1=liver) in labels.json or with --labels.")
        match = engine.model_text(name)
        structures.append(TrainingStructure(value, name, match.model_text, match.note))
    return structures


def build_slice_set(cases: list[LabelledVolume], structures: list[TrainingStructure], image_size: int,
                    axis: str = "axial") -> SliceSet:
    """Cut ``cases`` into the engine's model images, one preprocessing per structure's prompt."""
    engine = SegmentationEngine(_FrameOnly(image_size))
    result = SliceSet(structures, image_size)
    for case_number, case in enumerate(cases):
        levels, counts, keys, frames = {}, {}, {}, None
        for structure in structures:
            frames = engine.frames(case.volume, axis, None, structure.prompt)
            preprocessing = frames.preprocessing
            keys[structure.value] = preprocessing.key
            if preprocessing.key in levels:
                continue
            grey = preprocessing.apply(frames.geometry.as_slice_stack(case.volume.array))
            if preprocessing.grey_levels:  # exact: apply() floors to multiples of 1 / grey_levels
                grey = np.rint(grey * preprocessing.grey_levels).astype(np.uint8)
            levels[preprocessing.key], counts[preprocessing.key] = grey, preprocessing.grey_levels
        labels = np.ascontiguousarray(frames.geometry.as_slice_stack(case.labels))
        result.cases.append(_CaseSlices(case.case_id, frames.frame, levels, counts, keys, labels))
        present = {value: np.nonzero((labels == value).any(axis=(1, 2)))[0] for value in (s.value for s in structures)}
        for index, structure in enumerate(structures):
            holding = set(present[structure.value].tolist())
            for slice_index in range(labels.shape[0]):
                bucket = result.positives if slice_index in holding else result.negatives
                bucket.setdefault(index, []).append(Sample(case_number, index, slice_index))
    return result


class SeededSampler:
    """The sample of each (step, micro-step): a structure with slices that hold it, then one of those slices or,
    with ``negative_fraction``, a slice without it. Depends only on (seed, step, micro-step)."""

    def __init__(self, slices: SliceSet, seed: int, negative_fraction: float = NEGATIVE_FRACTION):
        self.slices, self.seed, self.negative_fraction = slices, int(seed), float(negative_fraction)
        self.trainable = sorted(index for index, samples in slices.positives.items() if samples)
        if not self.trainable:
            raise TrainingDataError("No training slice holds any of the labels: check that the label files hold "
                                    "the values labels.json names.")

    def draw(self, step: int, micro_step: int = 0) -> Sample:
        rng = np.random.default_rng([self.seed, int(step), int(micro_step)])
        structure = self.trainable[int(rng.integers(len(self.trainable)))]
        negatives = self.slices.negatives.get(structure, [])
        pool = negatives if negatives and rng.random() < self.negative_fraction else self.slices.positives[structure]
        return pool[int(rng.integers(len(pool)))]
