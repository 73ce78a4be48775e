"""The files of one case, written by the engine's one writer (:func:`medsam3.files.outputs.write_result_files`):
the labelmap with its colour table, the Slicer ``.seg.nrrd`` (names, colours, codes) and, for DICOM input, a DICOM
SEG referencing the source series; the same files ``medsam3 segment -o FOLDER`` writes, without the overlay. All
of a case's files appear together or not at all.
"""

from __future__ import annotations

from pathlib import Path

from ...files.outputs import DICOM_SEG_NAME, LABELMAP_NAME, SEG_NRRD_NAME, ResultFiles, write_result_files  # noqa: F401
from ...geometry.volume import Volume
from ..segment_pipeline import SegmentOutcome
from .cases import Case


def write_case_outputs(outcome: SegmentOutcome, volume: Volume, case: Case, folder: Path) -> tuple[list[Path], list[str]]:
    """Write the case's files into ``folder``; returns the files and notes (e.g. why no DICOM SEG was made)."""
    for leftover in folder.glob(".partial-*") if folder.is_dir() else ():
        leftover.unlink(missing_ok=True)  # the temporary files of a run killed while writing this case
    files = ResultFiles.in_folder(folder, overlay=False, dicom_seg=case.is_dicom)
    return write_result_files(files, outcome.labels, volume, outcome.segment_names, source_files=case.files)
