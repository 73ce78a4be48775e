"""Segmenting one image file from typed text, clicks and a box, and writing the results: the work behind
``medsam3 segment`` and the demo.

Clicks and the box form one prompt on one slice of one view. With typed text, every phrase becomes a segment;
clicks and a box then refine the single typed target. Masks are rebuilt from the :class:`MaskUpdate`s a session
returns, so the same code runs in-process and against a server.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..transports.backend import SegmentationBackend
from ..errors import MedSam3Error, PromptError
from ..interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt, refined_target, resolve_slice_prompt
from ..files.outputs import CodedSegment, ResultFiles, write_result_files
from ..files.seg_nrrd import read_seg_nrrd
from ..interaction.session import MaskUpdate
from ..geometry.slicing import SliceAxis, SliceGeometry
from ..geometry.volume import Volume

log = logging.getLogger("medsam3.timings")  # one record per stage: name and seconds (MEDSAM3_LOG=info shows them)

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class PlacedPrompt:
    """Clicks and a box as a command takes them (``segment``'s options, a row group of ``batch``'s prompts CSV):
    RAS millimetres, or voxel (i, j, k) with ``coordinates_ijk``. :func:`build_slice_prompt` makes the engine's
    :class:`SlicePrompt` of them on a volume."""

    positive_points: tuple[Triple, ...] = ()
    negative_points: tuple[Triple, ...] = ()
    box: tuple[Triple, Triple] | None = None
    coordinates_ijk: bool = False

    @property
    def has_spatial_prompt(self) -> bool:
        return bool(self.positive_points or self.negative_points or self.box)

    def placed(self) -> dict:
        """The placed fields alone, to hand on to another request (``SegmentRequest(**prompts.placed(), ...)``)."""
        return {f.name: getattr(self, f.name) for f in fields(PlacedPrompt)}


@dataclass(frozen=True)
class SegmentRequest(PlacedPrompt):
    """What to segment: typed text and/or placed clicks and a box (:class:`PlacedPrompt`)."""

    text: str = ""
    view: str = "axial"
    whole_volume: bool = True
    segment_name: str = ""  # the name of a clicked / boxed object when no text is typed, or of the started one
    start_from: str = ""  # a .seg.nrrd whose segments the session starts from (see StartingSegments)

    def check(self) -> None:
        """Reject requests that cannot be carried out, before any model is loaded."""
        if not self.text.strip() and not self.has_spatial_prompt and not self.start_from:
            raise PromptError("Nothing to segment: give --text, --point or --box.")
        if self.negative_points and not (self.positive_points or self.box or self.text.strip() or self.start_from):
            raise PromptError("A negative point only removes from an object: add a --point, a --box or --text.")
        if self.has_spatial_prompt and not self.start_from:
            refined_target(self.text)
        SliceAxis.parse(self.view)


@dataclass
class SegmentOutcome:
    """A labelmap (label n = ``segment_names[n - 1]``), each segment's best model score, and step timings."""

    labels: np.ndarray
    segment_names: list[str]
    scores: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the user (e.g. a name the model was not trained on)
    # segments written with the name, colour and codes they came with (--start-from), not re-coded from the name
    given: dict[str, CodedSegment] = field(default_factory=dict)

    def renamed(self, names: list[str]) -> "SegmentOutcome":
        """The same segments under new names (e.g. labelled as a plumbing check)."""
        scores = {new: self.scores[old] for old, new in zip(self.segment_names, names)}
        given = {new: self.given[old] for old, new in zip(self.segment_names, names) if old in self.given}
        return SegmentOutcome(self.labels, list(names), scores, self.timings, self.notes, given)


class StepTimer:
    """Seconds spent in named steps, in the order they ran; each step is also logged (``medsam3.timings``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            log.info("%s: %.3f s", name, elapsed, extra={"stage": name, "seconds": elapsed})


@dataclass(frozen=True)
class StartingSegments:
    """The segments a run starts from (``--start-from``): names in file order and one labelmap on the image's grid
    (label n = ``names[n - 1]``). A segment's mask is built only when it is needed (:meth:`mask`): a file with a
    hundred segments on a large CT holds one labelmap, not a hundred full-volume masks."""

    names: tuple[str, ...]
    labels: np.ndarray
    source: str = ""
    segments: tuple[CodedSegment, ...] = ()  # names, colours and codes as the file has them

    @classmethod
    def read(cls, path: str | Path, volume: Volume) -> "StartingSegments":
        """A Slicer ``.seg.nrrd`` on exactly the image's grid; one clear error otherwise (its size is checked
        against the image's before any voxel is inflated)."""
        path = Path(path)
        if not path.name.lower().endswith(SEG_NRRD_SUFFIX):
            raise PromptError(f"--start-from {path}: give a Slicer segmentation file ending in {SEG_NRRD_SUFFIX} "
                              "(in Slicer: Save the segmentation, or Export to files as .seg.nrrd).")
        segmentation = read_seg_nrrd(path, shape_ijk=volume.shape_ijk)
        labels = segmentation.labels
        if not _same_grid(labels, volume):
            raise PromptError(f"--start-from {path}: its grid ({_grid_text(labels)}) differs from the image's "
                              f"({_grid_text(volume)}); save the segmentation with this image as its reference "
                              "geometry (in Slicer: Segmentations > Export to files, reference volume = this image).")
        segments = tuple(CodedSegment.from_serialized(name, colour, terminology) for name, colour, terminology in
                         zip(segmentation.segment_names, segmentation.colours, segmentation.terminologies))
        return cls(segmentation.segment_names, labels.array, str(path), segments)

    def mask(self, index: int) -> np.ndarray:
        """The mask of segment ``index`` (0-based), built on demand."""
        return self.labels == index + 1

    def target(self, name: str) -> int:
        """The index of the segment clicks and a box refine: ``name``, or the only segment."""
        listed = ", ".join(repr(n) for n in self.names[:5]) + (f" and {len(self.names) - 5} more"
                                                               if len(self.names) > 5 else "")
        if name:
            if name in self.names:
                return self.names.index(name)
            raise PromptError(f"--name {name!r} is not a segment of {self.source} (it has {listed}): give one of "
                              "those names.")
        if len(self.names) == 1:
            return 0
        raise PromptError(f"{self.source} has {len(self.names)} segments ({listed}): say which one the clicks "
                          "refine with --name.")


def _same_grid(labels: Volume, volume: Volume) -> bool:
    return (labels.array.shape == volume.array.shape
            and np.allclose(labels.ijk_to_ras, volume.ijk_to_ras, rtol=0.0, atol=1e-4))


def _grid_text(volume: Volume) -> str:
    """Shape (i, j, k), spacing, origin and directions, short enough for one line."""
    matrix = np.asarray(volume.ijk_to_ras, dtype=float)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    directions = matrix[:3, :3] / spacing
    numbers = lambda values: ",".join(f"{v:.4g}" for v in values)  # noqa: E731
    return (f"size {'x'.join(str(n) for n in volume.array.shape[::-1])}, spacing {numbers(spacing)}, "
            f"RAS origin {numbers(matrix[:3, 3])}, directions {numbers(directions.T.ravel())}")


def _to_ijk(volume: Volume, point: Triple, coordinates_ijk: bool) -> Triple:
    if coordinates_ijk:
        return tuple(float(v) for v in point)
    return tuple(float(v) for v in volume.ras_to_ijk_points([point])[0])


def build_slice_prompt(volume: Volume, request: SegmentRequest) -> SlicePrompt | None:
    """The request's clicks and box as one prompt on one slice (None without clicks or box)."""
    if not request.has_spatial_prompt:
        return None
    points = tuple(PointPrompt(_to_ijk(volume, p, request.coordinates_ijk), True) for p in request.positive_points)
    points += tuple(PointPrompt(_to_ijk(volume, p, request.coordinates_ijk), False)
                    for p in request.negative_points)
    box = None
    if request.box is not None:
        box = BoxPrompt(_to_ijk(volume, request.box[0], request.coordinates_ijk),
                        _to_ijk(volume, request.box[1], request.coordinates_ijk))
    prompt = SlicePrompt(SliceAxis.parse(request.view), points=points, box=box)
    resolve_slice_prompt(volume, prompt)  # a prompt off the volume fails here, with the engine's message
    return prompt


def _text_slice_index(volume: Volume, request: SegmentRequest, prompt: SlicePrompt | None) -> int | None:
    """The slice typed text is detected on: None (every slice) for whole-volume runs, else the clicked slice or
    the middle slice of the view."""
    if request.whole_volume:
        return None
    if prompt is not None:
        return resolve_slice_prompt(volume, prompt).slice_index
    return SliceGeometry.for_volume(volume, request.view).slice_count // 2


def segment_volume(backend: SegmentationBackend, volume: Volume, request: SegmentRequest,
                   timer: StepTimer | None = None, start: StartingSegments | None = None) -> SegmentOutcome:
    """Run the request in one session of ``backend`` and return the labelmap of its segments.

    With ``start``, each starting segment becomes an object seeded with its mask (``set_mask``, as the Slicer
    module's "Start from segment"); clicks and a box refine the one ``request.segment_name`` names, and every other
    starting segment comes back unchanged, before the typed text's segments."""
    request.check()
    target = start.target(request.segment_name) if start is not None and request.has_spatial_prompt else None
    timer = timer or StepTimer()
    prompt = build_slice_prompt(volume, request)
    masks: dict[int, np.ndarray] = {}
    names: dict[int, str] = {}
    scores: dict[int, float] = {}

    notes: list[str] = []

    def collect(update: MaskUpdate, name: str) -> None:
        if update.note and update.note not in notes:
            notes.append(update.note)
        mask = masks.setdefault(update.object_id, np.zeros(volume.array.shape, dtype=bool))
        update.apply_to(mask)
        names[update.object_id] = name
        if update.slice_scores:
            scores[update.object_id] = max(update.slice_scores.values())

    with timer.step("open_session"):  # for a server, this uploads the volume
        session = backend.open_session(volume)
    try:
        seeded = None  # only the segment the clicks refine becomes a session object; the others are kept as read
        if start is not None and target is not None:
            with timer.step("start_from"):
                seeded = session.new_object_id()
                collect(session.set_mask(seeded, start.mask(target), start.names[target]), start.names[target])
        if request.text.strip():
            with timer.step("text"):
                for update in session.segment_text(request.text, request.view,
                                                   _text_slice_index(volume, request, prompt)):
                    collect(update, update.label)
        if prompt is not None:
            with timer.step("prompts"):
                if target is not None:  # refine a starting segment, led by its own name
                    object_id, text = seeded, ""
                else:
                    object_id, text = next(iter(masks), None) or session.new_object_id(), request.text.strip()
                name = names.get(object_id) or request.segment_name or "Segment_1"
                collect(session.add_prompt(object_id, prompt, whole_volume=request.whole_volume,
                                           target_text=text), name)
    finally:
        session.close()
    outcome = _as_labelmap(volume.array.shape, masks, names, scores, timer, start, target, seeded)
    outcome.notes = notes
    if start is not None:
        outcome.given = {segment.name: segment for segment in start.segments}
    return outcome


def _as_labelmap(shape: tuple[int, ...], masks: dict[int, np.ndarray], names: dict[int, str],
                 scores: dict[int, float], timer: StepTimer, start: StartingSegments | None = None,
                 target: int | None = None, seeded: int | None = None) -> SegmentOutcome:
    """One labelmap: the starting segments first (in file order, the refined one replaced by its new mask), then
    the session's other objects in the order they were made; a later segment wins where two overlap."""
    order = [o for o in sorted(masks) if o != seeded]
    first = len(start.names) if start is not None else 0
    labels = np.zeros(shape, dtype=np.uint8 if first + len(order) < 256 else np.uint16)
    segment_names, segment_scores = [], {}
    if start is not None:
        labels[...] = start.labels
        if seeded is not None:
            labels[labels == target + 1] = 0
            labels[masks[seeded] & ~(labels > target + 1)] = target + 1
        segment_names = list(start.names)
        segment_scores = {name: 0.0 for name in start.names}
        if seeded is not None:
            segment_scores[start.names[target]] = scores.get(seeded, 0.0)
    for value, object_id in enumerate(order, start=first + 1):
        labels[masks[object_id]] = value
        segment_names.append(names[object_id])
        segment_scores[names[object_id]] = scores.get(object_id, 0.0)
    return SegmentOutcome(labels, segment_names, segment_scores, timer.seconds)


LABELMAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")  # single-file formats (a header + raw pair is not atomic)
SEG_NRRD_SUFFIX = ".seg.nrrd"
OVERLAY_SUFFIX = ".png"


class OutputPathError(MedSam3Error, ValueError):
    """An output path that cannot or must not be written."""


def labelmap_suffix(path: str | Path) -> str | None:
    """The labelmap image extension ``path`` ends with, or None."""
    name = Path(path).name.lower()
    if name.endswith(SEG_NRRD_SUFFIX):
        return None
    return next((suffix for suffix in LABELMAP_SUFFIXES if name.endswith(suffix)), None)


def _looks_like_a_file_name(path: Path) -> bool:
    """``out.txt``, ``mask.png``: a short alphabetic extension (``run.2`` or ``case_1.0`` still name folders)."""
    suffix = path.suffix[1:]
    return 1 <= len(suffix) <= 5 and suffix.isalpha()


def _nearest_existing_folder(path: Path) -> Path:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_folder_writable(path: Path) -> None:
    """Refuse ``path`` when its folder cannot be created or written (tried with a probe file, which also works
    for root and for read-only mounts where ``os.access`` says yes)."""
    folder = _nearest_existing_folder(path)
    if not folder.is_dir():
        raise OutputPathError(f"Cannot write {path}: {folder} is a file, not a folder. Choose another output path.")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".medsam3-write-check-"):
            pass
    except OSError as error:
        raise OutputPathError(f"Cannot write {path}: the folder {folder} is not writable "
                              f"({error.strerror or error}). Choose another output folder.") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@dataclass(frozen=True)
class OutputPaths(ResultFiles):
    """Where ``medsam3 segment`` writes: the engine's :class:`ResultFiles` (None skips a file; the labelmap's
    colour table always goes beside it), read from ``-o`` and checked before any work."""

    @classmethod
    def for_output(cls, output: str | Path, seg_nrrd: str | None = None,
                   overlay: str | None = None, dicom: bool = False) -> "OutputPaths":
        """The meaning of ``-o`` / ``--output``: a folder that receives every result file
        (:meth:`ResultFiles.in_folder`: labelmap.nii.gz + labelmap.labels.csv, segmentation.seg.nrrd, overlay.png
        and, for ``dicom`` input, segmentation.dcm), or a labelmap file when the name ends in an image extension
        (.nii.gz, .nii, .nrrd, .mha), its colour table beside it and the .seg.nrrd and overlay only when asked.
        ``seg_nrrd`` / ``overlay``: None for the default (skip beside a file, in the folder), "" for the default
        name, else a path."""
        output = Path(output)
        if labelmap_suffix(output):
            stem = output.name[:-len(labelmap_suffix(output))]
            default_seg = output.with_name(stem + SEG_NRRD_SUFFIX)
            default_overlay = output.with_name(stem + OVERLAY_SUFFIX)
            return cls(output, None if seg_nrrd is None else Path(seg_nrrd or default_seg),
                       None if overlay is None else Path(overlay or default_overlay))
        if output.name.lower().endswith(SEG_NRRD_SUFFIX):
            raise OutputPathError(f"-o {output}: a .seg.nrrd is written with --seg-nrrd; give -o a labelmap "
                                  "file (.nii.gz, .nii, .nrrd, .mha) or a folder.")
        if _looks_like_a_file_name(output) and not output.is_dir():
            raise OutputPathError(f"-o {output}: not an image file name. Give a labelmap file ending in "
                                  f"{', '.join(LABELMAP_SUFFIXES)}, or a folder (a name without extension).")
        files = ResultFiles.in_folder(output, dicom_seg=dicom)
        return cls(**{**vars(files), "seg_nrrd": Path(seg_nrrd) if seg_nrrd else files.seg_nrrd,
                      "overlay": Path(overlay) if overlay else files.overlay})

    def check(self, inputs: Sequence[str | Path] = (), overwrite: bool = False) -> "OutputPaths":
        """Refuse, before any work, outputs that cannot be written or must not be: a wrong extension, the same
        file twice, an input file, an existing file without ``overwrite``, a folder that cannot be written."""
        if not labelmap_suffix(self.labelmap):
            raise OutputPathError(f"{self.labelmap}: a labelmap file must end in {', '.join(LABELMAP_SUFFIXES)}.")
        if self.seg_nrrd is not None and not Path(self.seg_nrrd).name.lower().endswith(SEG_NRRD_SUFFIX):
            raise OutputPathError(f"--seg-nrrd {self.seg_nrrd}: the file name must end in {SEG_NRRD_SUFFIX}.")
        if self.overlay is not None and not Path(self.overlay).name.lower().endswith(OVERLAY_SUFFIX):
            raise OutputPathError(f"--overlay {self.overlay}: the picture is a PNG; the name must end in .png.")
        paths = self.all()
        resolved = [p.resolve() for p in paths]
        if len(set(resolved)) != len(resolved):
            raise OutputPathError(f"Two outputs have the same path ({', '.join(map(str, paths))}): give each its "
                                  "own name.")
        for path in paths:
            for source in inputs:
                source = Path(source)
                if path.resolve() == source.resolve() or _same_file(path, source):
                    raise OutputPathError(f"{path} is the input image: medsam3 never overwrites its input. "
                                          "Choose another output name.")
            if path.is_dir():
                raise OutputPathError(f"{path} is a folder: give a file name, or a different folder.")
            if path.exists() and not overwrite:
                raise OutputPathError(f"{path} already exists: pass --overwrite to replace it, or choose another "
                                      "name.")
            _check_folder_writable(path)
        return self


def write_outputs(outcome: SegmentOutcome, volume: Volume, paths: OutputPaths, overlay_title: str = "",
                  timer: StepTimer | None = None, *, inputs: Sequence[str | Path] = (),
                  overwrite: bool = True, source_files: Sequence[str | Path] = ()) -> list[Path]:
    """Write the labelmap with its colour table (and as ``paths`` asks the .seg.nrrd, the DICOM SEG from
    ``source_files`` and the overlay) through the one writer, :func:`medsam3.files.outputs.write_result_files`;
    returns the files written. A DICOM SEG that cannot be made adds a note to ``outcome.notes``.

    The paths are checked first (:meth:`OutputPaths.check` with ``inputs`` and ``overwrite``; callers should also
    check them before the model runs). Every file is written to a temporary name and all are moved into place
    at the end, so a failure leaves no output of this run and every earlier file as it was."""
    paths.check(inputs, overwrite)
    written, notes = write_result_files(paths, outcome.labels, volume, outcome.segment_names,
                                        source_files=source_files, overlay_title=overlay_title,
                                        timer=timer or StepTimer(), given=outcome.given)
    outcome.notes.extend(note for note in notes if note not in outcome.notes)
    return written
