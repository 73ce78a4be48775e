"""Segmentation files others can read: labelmap (NIfTI, NRRD), Slicer ``.seg.nrrd`` and DICOM SEG.

The labelmap, its colour table and the DICOM SEG are written by the engine's one writer
(:mod:`medsam3.files.outputs`, also behind ``medsam3 segment`` and ``medsam3 batch``); this module only collects
the segments from MRML. ``.seg.nrrd`` is written by Slicer's own storage node.

Every export carries each segment's name and codes: a labelmap gets a Slicer colour-table ``.csv`` beside it
(label value, name, colour and the SNOMED CT category / type / modifier columns Slicer reads back); ``.seg.nrrd``
and DICOM SEG store them in the file. No segment is ever dropped silently: a format that cannot hold an empty
segment (labelmap, DICOM SEG) skips it and lists it in the returned :class:`ExportReport`; overlapping segments,
which one labelmap cannot hold, are an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer

from medsam3.errors import VolumeError
from medsam3.files import outputs as engine_outputs
from medsam3.files.outputs import CodedSegment
from medsam3.geometry.volume import Volume

from .segment_io import segment_mask
from .terminology import segment_tag
from .volume_nodes import local_ijk_to_ras

@dataclass
class ExportedSegment:
    segment_id: str
    name: str
    colour: tuple[float, float, float]
    terminology: str  # Slicer's serialized terminology entry ("" when the segment has none)
    mask: np.ndarray

    def coded(self) -> CodedSegment:
        """Name, colour and codes as the engine's writer takes them (coded from the name when it has no tag)."""
        return CodedSegment.from_serialized(self.name, self.colour, self.terminology)


@dataclass
class ExportReport:
    """Where the file went, what it holds, and what was left out and why."""

    path: Path
    exported: list[str] = field(default_factory=list)  # segment names, in label / segment-number order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (segment name, reason)
    extra_files: list[Path] = field(default_factory=list)


def collect_segments(segmentation_node, volume_node, segment_ids=None) -> tuple[list[ExportedSegment], list]:
    """The segments to export (all, or the given IDs in that order) and the empty ones, with reasons."""
    segmentation = segmentation_node.GetSegmentation()
    if segment_ids is None:
        segment_ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    if not segment_ids:
        raise VolumeError(f"'{segmentation_node.GetName()}' has no segments to export.")
    kept, skipped = [], []
    for segment_id in segment_ids:
        segment = segmentation.GetSegment(segment_id)
        if segment is None:
            raise VolumeError(f"There is no segment {segment_id!r} in '{segmentation_node.GetName()}'.")
        mask = segment_mask(segmentation_node, segment_id, volume_node)
        if not mask.any():
            skipped.append((segment.GetName(), "the segment is empty"))
            continue
        kept.append(ExportedSegment(segment_id, segment.GetName(), tuple(segment.GetColor()),
                                    segment_tag(segment), mask))
    if not kept:
        raise VolumeError("Every segment is empty: there is nothing to export.")
    return kept, skipped


# --- labelmap ------------------------------------------------------------------------------------------------
def colour_table_path(labelmap_path: Path) -> Path:
    """``<name>.labels.csv`` beside ``<name>.nii.gz``, as Slicer names a labelmap's colour table."""
    return engine_outputs.colour_table_path(labelmap_path)


def _reference(volume_node, array: np.ndarray) -> Volume:
    """The source volume's grid (array shape and IJK-to-RAS, without parent transforms) for the engine's writer."""
    return Volume(array, local_ijk_to_ras(volume_node), name=volume_node.GetName())


def export_labelmap(segmentation_node, volume_node, path, segment_ids=None) -> ExportReport:
    """One label value per segment (1, 2, ... in segment order) on the source volume's grid, plus a colour table
    with names and codes. Overlapping segments cannot share one labelmap and raise an error."""
    path = Path(path)
    table_path = colour_table_path(path)
    segments, skipped = collect_segments(segmentation_node, volume_node, segment_ids)
    labels = np.zeros(segments[0].mask.shape, dtype=np.uint16)
    for value, segment in enumerate(segments, start=1):
        overlap = (labels > 0) & segment.mask
        if overlap.any():
            other = segments[int(labels[overlap].flat[0]) - 1].name
            raise VolumeError(f"Segments '{other}' and '{segment.name}' overlap ({int(overlap.sum())} voxels): a "
                              "labelmap holds one label per voxel. Export as .seg.nrrd or DICOM SEG instead, or "
                              "remove the overlap in the Segment Editor.")
        labels[segment.mask] = value
    engine_outputs.write_labelmap_with_table(path, labels, _reference(volume_node, labels),
                                             [s.coded() for s in segments], table_path)
    return ExportReport(path, [s.name for s in segments], skipped, [table_path])


# --- .seg.nrrd -------------------------------------------------------------------------------------------------
def export_seg_nrrd(segmentation_node, path) -> ExportReport:
    """Slicer's own segmentation file: every segment (empty ones included) with names, colours, terminology."""
    path = Path(path)
    if not path.name.endswith(".seg.nrrd"):
        raise VolumeError(f"{path}: a Slicer segmentation file name ends with .seg.nrrd.")
    scene = segmentation_node.GetScene()
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    try:
        storage.SetFileName(str(path))
        if not storage.WriteData(segmentation_node):
            raise VolumeError(f"Could not write {path}.")
    finally:
        scene.RemoveNode(storage)
    segmentation = segmentation_node.GetSegmentation()
    names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
    return ExportReport(path, names)


# --- DICOM SEG -------------------------------------------------------------------------------------------------
MINIMUM_HIGHDICOM = (0, 23)  # 0.22, the last release for pydicom 2, uses np.float_, which numpy 2 removed


def dicom_seg_unavailable(version_of=None) -> str:
    """"" when DICOM SEG files can be written in this Python, else one line saying why and what to do instead.

    DICOM SEG is written with highdicom. highdicom 0.23 and later need pydicom 3, while Slicer 5.10 ships pydicom
    2.4.4 and numpy 2.0.2 (SuperBuild/External_python-dicom-requirements.cmake and External_python-numpy.cmake):
    the module never replaces Slicer's pydicom, and the last highdicom for pydicom 2 fails under numpy 2. Slicer
    releases after 5.10 ship pydicom 3 and highdicom themselves (External_python-dicom-requirements.cmake on
    Slicer's main branch: pydicom 3.0.2, highdicom 0.27.0), and there the export works.
    """
    from .dependencies import installed_version

    version_of = version_of or installed_version

    def major_minor(name: str) -> tuple[int, ...] | None:
        version = version_of(name)
        if version is None:
            return None
        parts = [int(part) for part in version.split("+")[0].split(".")[:2] if part.isdigit()]
        return tuple(parts) if parts else None

    pydicom, highdicom = major_minor("pydicom"), major_minor("highdicom")
    if pydicom is not None and pydicom < (3,):
        return (f"DICOM SEG export needs pydicom 3; this Slicer's own pydicom is {version_of('pydicom')}, which is "
                "not replaced. Export a .seg.nrrd instead (or use a Slicer newer than 5.10, which ships pydicom 3 "
                "and highdicom).")
    if highdicom is None or highdicom < MINIMUM_HIGHDICOM:
        return ("DICOM SEG export needs the highdicom package (0.23 or later), which this Python does not have. "
                "Export a .seg.nrrd instead, or install highdicom (slicer.util.pip_install('highdicom')).")
    return ""

def dicom_source_files(volume_node) -> list[str]:
    """The DICOM files a volume was loaded from, as Slicer's DICOM module records them."""
    uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        raise VolumeError(f"'{volume_node.GetName()}' was not loaded from DICOM (through Slicer's DICOM module), "
                          "so a DICOM SEG cannot reference it. Export a labelmap or .seg.nrrd instead.")
    files = [database.fileForInstance(uid) for uid in uids]
    missing = [uid for uid, file in zip(uids, files) if not file]
    if missing:
        raise VolumeError(f"{len(missing)} source DICOM instances of '{volume_node.GetName()}' are no longer in the "
                          "DICOM database; re-import the series.")
    return files


def export_dicom_seg(segmentation_node, volume_node, path, source_files=None, segment_ids=None,
                     series_description: str = "MedicalSAM3 segmentation") -> ExportReport:
    """A binary DICOM SEG referencing the source series, one segment per non-empty segment with its codes."""
    unavailable = dicom_seg_unavailable()
    if unavailable:
        raise VolumeError(unavailable)
    path = Path(path)
    files = list(source_files) if source_files is not None else dicom_source_files(volume_node)
    segments, skipped = collect_segments(segmentation_node, volume_node, segment_ids)
    try:
        seg = engine_outputs.dicom_seg(files, _reference(volume_node, segments[0].mask), [s.mask for s in segments],
                                       [s.coded() for s in segments], automatic=False,
                                       series_description=series_description)
    except VolumeError as error:
        raise VolumeError(f"{str(error)[:1].upper()}{str(error)[1:]}") from None
    seg.save_as(path)
    return ExportReport(path, [s.name for s in segments], skipped)
