"""The one writer of result files: labelmap + colour table, Slicer ``.seg.nrrd``, DICOM SEG and the overlay picture.

``medsam3 segment``, ``medsam3 batch``, the demo and the Slicer module's export all write through here, so the same
segments give the same files wherever they are made: names, colours and SNOMED CT codes from the one terminology
(:mod:`medsam3.terminology`), the same ``.seg.nrrd`` bytes, the same DICOM SEG segment descriptions.

- labelmap (NIfTI / NRRD) with ``<name>.labels.csv`` beside it: the colour-table file Slicer writes and reads
  (vtkMRMLColorTableStorageNode, "CSV Color Table (.labels.csv)"): label value, name, colour, codes;
- ``.seg.nrrd`` through slicerio (:mod:`.seg_nrrd`), each segment with its terminology entry;
- DICOM SEG through highdicom, referencing the source series (:func:`dicom_seg`);
- the overlay PNG (:mod:`.overlay`), each outline in its segment's colour.

A new export format is one function here plus the callers that offer it (docs/architecture.md).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import __version__ as ENGINE_VERSION
from ..errors import VolumeError, missing_extra
from ..geometry.volume import LPS_TO_RAS, Volume
from ..terminology import EMPTY_CODE, Code, Terminology, default_table, parse_serialized
from .atomic_files import AtomicOutputs
from .segment_colours import segment_colour
from .volume_io import write_labelmap

LABELMAP_NAME = "labelmap.nii.gz"
SEG_NRRD_NAME = "segmentation.seg.nrrd"
OVERLAY_NAME = "overlay.png"
DICOM_SEG_NAME = "segmentation.dcm"
LABELMAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha")
_CSV_COLUMNS = ["LabelValue", "Name", "Color_R", "Color_G", "Color_B", "Color_A"] + [
    f"{part}_{field}" for part in ("Category", "Type", "TypeModifier", "Region", "RegionModifier")
    for field in ("CodingScheme", "CodeValue", "CodeMeaning")]


@dataclass(frozen=True)
class CodedSegment:
    """A segment as every file describes it: name, colour (0-1 RGB), terminology context and codes."""

    name: str
    colour: tuple[float, float, float]
    context: str
    category: Code
    type: Code
    modifier: Code = EMPTY_CODE

    @classmethod
    def from_terminology(cls, terminology: Terminology, colour=None) -> "CodedSegment":
        return cls(terminology.name, tuple(colour or terminology.colour), terminology.context, terminology.category,
                   terminology.type, terminology.modifier)

    @classmethod
    def from_serialized(cls, name: str, colour, serialized: str) -> "CodedSegment":
        """A segment with Slicer's serialized terminology entry; coded from its name when it has none (e.g. a
        segment drawn by hand)."""
        parsed = parse_serialized(serialized)
        if parsed is None:
            return cls.from_terminology(default_table().resolve(name), colour)._renamed(name)
        context, category, type_, modifier = parsed
        return cls(name, tuple(colour), context, category, type_, modifier)

    def _renamed(self, name: str) -> "CodedSegment":
        return CodedSegment(name, self.colour, self.context, self.category, self.type, self.modifier)

    def serialized(self) -> str:
        """Slicer's serialized terminology entry (what a .seg.nrrd and a colour table keep)."""
        return Terminology(self.name, "", self.colour, self.context, self.category, self.type,
                           self.modifier).serialized()


def coded_segment(name: str, index: int) -> CodedSegment:
    """The ``index``-th segment (0-based), typed (or named) ``name``: named, coloured and coded by the terminology,
    e.g. "sin kidney" -> "Left kidney", Kidney + Left. A name the table does not know keeps its spelling, gets the
    generic Tissue code and the engine's palette colour of its position."""
    resolved = default_table().resolve(name)
    colour = tuple(c / 255.0 for c in segment_colour(index)) if resolved.is_generic else None
    return CodedSegment.from_terminology(resolved, colour)


def coded_segments(names: Sequence[str]) -> list[CodedSegment]:
    """:func:`coded_segment` of each name, in label order."""
    return [coded_segment(name, index) for index, name in enumerate(names)]


# --- labelmap + colour table -----------------------------------------------------------------------------------
def colour_table_path(labelmap_path: str | Path) -> Path:
    """``<name>.labels.csv`` beside ``<name>.nii.gz``: the name Slicer gives a labelmap's colour table
    (vtkSlicerSegmentationsModuleLogic::ExportSegmentsBinaryLabelmapRepresentationToFiles), so Slicer loads both."""
    labelmap_path = Path(labelmap_path)
    name = labelmap_path.name
    for suffix in LABELMAP_SUFFIXES:
        if name.lower().endswith(suffix):
            return labelmap_path.with_name(name[: -len(suffix)] + ".labels.csv")
    raise VolumeError(f"{labelmap_path}: choose a .nii.gz, .nii, .nrrd or .mha file name for a labelmap.")


def write_colour_table(path: str | Path, segments: Sequence[CodedSegment]) -> Path:
    """Slicer's CSV colour table: label 0 Background, label n the n-th segment with its colour and codes (the
    columns and quoting vtkMRMLColorTableStorageNode writes; Slicer reads it back with the terminology)."""
    path = Path(path)
    rows = [[0, "Background", 0, 0, 0, 0] + [""] * 15]
    for value, segment in enumerate(segments, start=1):
        rgb = [int(float(c) * 255 + 0.5) for c in segment.colour]
        codes = [*segment.category, *segment.type, *segment.modifier, "", "", "", "", "", ""]
        rows.append([value, segment.name, *rgb, 255, *codes])
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        writer.writerows(rows)
    return path


def write_labelmap_with_table(path: str | Path, labels: np.ndarray, reference: Volume,
                              segments: Sequence[CodedSegment], table_path: str | Path | None = None) -> list[Path]:
    """The labelmap (label n = ``segments[n - 1]``) on the reference grid, and its colour table beside it (or at
    ``table_path``). Returns both paths."""
    path = Path(path)
    table_path = Path(table_path) if table_path is not None else colour_table_path(path)
    write_labelmap(path, labels, reference)
    write_colour_table(table_path, segments)
    return [path, table_path]


# --- .seg.nrrd -------------------------------------------------------------------------------------------------
def write_coded_seg_nrrd(path: str | Path, labels: np.ndarray, reference: Volume,
                         segments: Sequence[CodedSegment]) -> Path:
    """A ``.seg.nrrd`` whose segments carry the names, colours and terminology entries Slicer shows."""
    from .seg_nrrd import write_seg_nrrd  # imports the interaction layer (and torch): only when one is written

    return write_seg_nrrd(path, labels, [s.name for s in segments], reference, colours=[s.colour for s in segments],
                          terminologies=[s.serialized() for s in segments])


# --- DICOM SEG -------------------------------------------------------------------------------------------------
def _source_datasets(source_files: Sequence[str | Path]) -> list:
    import pydicom

    datasets = [pydicom.dcmread(str(f)) for f in source_files]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "FrameOfReferenceUID"):
        if not all(str(d.get(keyword, "") or "").strip() for d in datasets):
            raise VolumeError(f"the source DICOM images have no {keyword} (they were anonymised without it), so a "
                              "DICOM SEG cannot reference them; a labelmap or .seg.nrrd holds the segments instead.")
    for dataset in datasets:
        if "SpecificCharacterSet" in dataset and not str(dataset.SpecificCharacterSet or "").strip():
            del dataset.SpecificCharacterSet  # empty means the default repertoire; highdicom wants it absent
    return datasets


def _frame_slices(datasets: list, reference: Volume) -> list[int]:
    """For each source image, the volume slice (k) it is; checks that image rows / columns are volume j / i."""
    ras_to_ijk = reference.ras_to_ijk
    orientation = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    along_row = ras_to_ijk[:3, :3] @ (LPS_TO_RAS[:3, :3] @ orientation[:3])
    along_column = ras_to_ijk[:3, :3] @ (LPS_TO_RAS[:3, :3] @ orientation[3:])
    slices = []
    for dataset in datasets:
        ijk = ras_to_ijk @ LPS_TO_RAS @ np.r_[np.asarray(dataset.ImagePositionPatient, dtype=float), 1.0]
        k = int(round(ijk[2]))
        if np.abs(ijk[:3] - [0, 0, k]).max() > 0.01 or along_row[0] <= 0 or along_column[1] <= 0:
            raise VolumeError("the volume's voxel grid differs from its DICOM images (it was resampled or "
                              "reoriented), so a DICOM SEG cannot be made on it.")
        slices.append(k)
    return slices


def dicom_seg(source_files: Sequence[str | Path], reference: Volume, masks: Sequence[np.ndarray],
              segments: Sequence[CodedSegment], *, automatic: bool = True,
              series_description: str = "MedicalSAM3 segmentation"):
    """A binary DICOM SEG (a highdicom ``Segmentation``, not yet saved) of ``masks`` (each (K, J, I) on the
    reference grid), segment n described by ``segments[n - 1]``, referencing the source series. Raises
    :class:`VolumeError` (one line) when the sources cannot be referenced."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dicom_codes

    with warnings.catch_warnings():  # pydicom / highdicom warn about oddities of the source headers, not ours
        warnings.simplefilter("ignore")
        datasets = _source_datasets(source_files)
        slices = _frame_slices(datasets, reference)
        pixels = np.stack([np.stack([m[k] for m in masks], axis=-1) for k in slices]).astype(np.uint8)
        algorithm = hd.AlgorithmIdentificationSequence(name="MedicalSAM3Slicer", version=ENGINE_VERSION,
                                                       family=dicom_codes.cid7162.ArtificialIntelligence)
        algorithm_type = (hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if automatic
                          else hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC)
        descriptions = []
        for number, segment in enumerate(segments, start=1):
            description = hd.seg.SegmentDescription(
                segment_number=number, segment_label=segment.name,
                segmented_property_category=hd.sr.CodedConcept(segment.category[1], segment.category[0],
                                                               segment.category[2]),
                segmented_property_type=hd.sr.CodedConcept(segment.type[1], segment.type[0], segment.type[2]),
                algorithm_type=algorithm_type, algorithm_identification=algorithm)
            if segment.modifier[1]:
                description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                    hd.sr.CodedConcept(segment.modifier[1], segment.modifier[0], segment.modifier[2])]
            descriptions.append(description)
        return hd.seg.Segmentation(
            source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=300,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="MedicalSAM3Slicer",
            manufacturer_model_name="Medical SAM3", software_versions=ENGINE_VERSION, device_serial_number="0",
            series_description=series_description, omit_empty_frames=False)


def label_masks(labels: np.ndarray, count: int) -> list[np.ndarray]:
    """One boolean mask per label value 1..count."""
    return [labels == value for value in range(1, count + 1)]


# --- all of a result's files at once ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ResultFiles:
    """Where one result's files go; None skips a file. The colour table always goes beside the labelmap."""

    labelmap: Path
    seg_nrrd: Path | None = None
    overlay: Path | None = None
    dicom_seg: Path | None = None

    @classmethod
    def in_folder(cls, folder: str | Path, overlay: bool = True, dicom_seg: bool = False) -> "ResultFiles":
        folder = Path(folder)
        return cls(folder / LABELMAP_NAME, folder / SEG_NRRD_NAME, folder / OVERLAY_NAME if overlay else None,
                   folder / DICOM_SEG_NAME if dicom_seg else None)

    def all(self) -> list[Path]:
        """Every file, in writing order (the labelmap's colour table right after it)."""
        files = [Path(self.labelmap), colour_table_path(self.labelmap)]
        return files + [Path(p) for p in (self.seg_nrrd, self.dicom_seg, self.overlay) if p is not None]


def write_result_files(files: ResultFiles, labels: np.ndarray, volume: Volume, segment_names: Sequence[str], *,
                       source_files: Sequence[str | Path] = (), overlay_title: str = "",
                       outputs: AtomicOutputs | None = None, timer=None,
                       given: Mapping[str, CodedSegment] | None = None) -> tuple[list[Path], list[str]]:
    """Write a labelmap (label n = ``segment_names[n - 1]``) and, as ``files`` asks, its colour table, the coded
    ``.seg.nrrd``, the DICOM SEG (from ``source_files``, the DICOM images ``volume`` was read from) and the overlay.
    All appear together or none (``outputs``, else a new :class:`AtomicOutputs`). Returns the files written and
    notes for the user: a DICOM SEG that cannot be made is a note, not a failure, and the other files are written.
    A segment named in ``given`` is written as given (a segment the run started from keeps its name, colour and
    codes); every other is coded from its name (:func:`coded_segment`).
    """
    from contextlib import nullcontext

    step = timer.step if timer is not None else (lambda _name: nullcontext())
    given = given or {}
    segments = [given.get(name) or coded_segment(name, index) for index, name in enumerate(segment_names)]
    notes: list[str] = []
    seg = None
    if files.dicom_seg is not None:
        try:  # made before anything is written
            if not source_files:
                raise VolumeError("the input is not a DICOM series, so a DICOM SEG has no images to reference.")
            seg = dicom_seg(source_files, volume, label_masks(labels, len(segments)), segments)
        except VolumeError as error:
            notes.append(f"no DICOM SEG: {error}")
        except ImportError as error:  # the other files are still written
            notes.append(f"no DICOM SEG: {missing_extra(error, 'A DICOM SEG') or error}")
    own = outputs is None
    outputs = outputs or AtomicOutputs()
    try:
        with step("write"):
            write_labelmap_with_table(outputs.path_for(files.labelmap), labels, volume, segments,
                                      outputs.path_for(colour_table_path(files.labelmap)))
            if files.seg_nrrd is not None:
                write_coded_seg_nrrd(outputs.path_for(files.seg_nrrd), labels, volume, segments)
            if seg is not None:
                seg.save_as(outputs.path_for(files.dicom_seg))
        if files.overlay is not None:
            from .overlay import render_overlay  # scipy and Pillow: not needed by the Slicer module before set-up

            with step("overlay"):
                render_overlay(volume, labels, outputs.path_for(files.overlay), overlay_title,
                               colours=[s.colour for s in segments])
    except BaseException:
        if own:
            outputs.discard()
        raise
    if own:
        outputs.commit()
    written = [p for p in files.all() if p != files.dicom_seg or seg is not None]
    return written, notes
