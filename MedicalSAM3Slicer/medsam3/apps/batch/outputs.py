"""The files of one case: the labelmap, the Slicer ``.seg.nrrd`` (names, colours, codes) and, for DICOM input, a
DICOM SEG referencing the source series. All of a case's files appear together or not at all
(:class:`medsam3.files.atomic_files.AtomicOutputs`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import __version__ as ENGINE_VERSION
from ...files.atomic_files import AtomicOutputs
from ...errors import VolumeError
from ...files.seg_nrrd import write_seg_nrrd
from ..segment_pipeline import SegmentOutcome
from ...geometry.volume import Volume
from ...files.volume_io import write_labelmap
from .cases import Case
from .segment_codes import SegmentCode, segment_code

LABELMAP_NAME = "labelmap.nii.gz"
SEG_NRRD_NAME = "segmentation.seg.nrrd"
DICOM_SEG_NAME = "segmentation.dcm"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def write_seg_nrrd_with_codes(path: Path, labels: np.ndarray, codes: list[SegmentCode], reference: Volume) -> None:
    """A .seg.nrrd whose segments carry the names, colours and terminology codes Slicer shows."""
    write_seg_nrrd(path, labels, [c.name for c in codes], reference, colours=[c.colour for c in codes],
                   terminologies=[c.slicer_terminology() for c in codes])


def _source_datasets(case: Case) -> list:
    import pydicom

    datasets = [pydicom.dcmread(f) for f in case.files]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not all(str(d.get(keyword, "")).strip() for d in datasets):
            raise VolumeError(f"the source DICOM images have no {keyword} (anonymised without it), so a DICOM SEG "
                              "cannot reference them; the labelmap and .seg.nrrd were written")
    for dataset in datasets:
        if "SpecificCharacterSet" in dataset and not str(dataset.SpecificCharacterSet or "").strip():
            del dataset.SpecificCharacterSet  # empty means the default repertoire; highdicom wants it absent
    return datasets


def _frame_slices(datasets: list, volume: Volume) -> list[int]:
    """The volume slice k of each source image; checks that image columns / rows run along volume i / j."""
    ras_to_ijk = volume.ras_to_ijk
    orientation = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    along_row = ras_to_ijk[:3, :3] @ (_LPS_TO_RAS @ orientation[:3])
    along_column = ras_to_ijk[:3, :3] @ (_LPS_TO_RAS @ orientation[3:])
    slices = []
    for dataset in datasets:
        ijk = ras_to_ijk @ np.r_[_LPS_TO_RAS @ np.asarray(dataset.ImagePositionPatient, dtype=float), 1.0]
        k = int(round(ijk[2]))
        if np.abs(ijk[:3] - [0, 0, k]).max() > 0.01 or along_row[0] <= 0 or along_column[1] <= 0:
            raise VolumeError("the DICOM images do not lie on the volume's voxel grid, so no DICOM SEG was made")
        slices.append(k)
    return slices


def dicom_seg(case: Case, volume: Volume, labels: np.ndarray, codes: list[SegmentCode]):
    """A binary DICOM SEG of every segment, referencing the case's source series."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dicom_codes

    import warnings

    with warnings.catch_warnings():  # pydicom / highdicom warn about oddities of the source headers, not ours
        warnings.simplefilter("ignore")
        return _dicom_seg(case, volume, labels, codes, hd, dicom_codes)


def _dicom_seg(case: Case, volume: Volume, labels: np.ndarray, codes: list[SegmentCode], hd, dicom_codes):
    datasets = _source_datasets(case)
    slices = _frame_slices(datasets, volume)
    values = range(1, len(codes) + 1)
    pixels = np.stack([np.stack([labels[k] == v for v in values], axis=-1) for k in slices]).astype(np.uint8)
    algorithm = hd.AlgorithmIdentificationSequence(name="MedicalSAM3Slicer", version=ENGINE_VERSION,
                                                   family=dicom_codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for number, code in enumerate(codes, start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=code.name,
            segmented_property_category=hd.sr.CodedConcept(code.category[1], code.category[0], code.category[2]),
            segmented_property_type=hd.sr.CodedConcept(code.type[1], code.type[0], code.type[2]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        if code.modifier[1]:
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept(code.modifier[1], code.modifier[0], code.modifier[2])]
        descriptions.append(description)
    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=300,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="MedicalSAM3Slicer",
        manufacturer_model_name="Medical SAM3", software_versions=ENGINE_VERSION, device_serial_number="0",
        series_description="MedicalSAM3 batch segmentation", omit_empty_frames=False)


def write_case_outputs(outcome: SegmentOutcome, volume: Volume, case: Case, folder: Path) -> tuple[list[Path], list[str]]:
    """Write the case's files into ``folder``; returns the files and notes (e.g. why no DICOM SEG was made)."""
    codes = [segment_code(name, index) for index, name in enumerate(outcome.segment_names)]
    notes: list[str] = []
    seg = None
    if case.is_dicom:
        try:  # made before anything is written: a DICOM SEG that cannot be made is a note, not a failed case
            seg = dicom_seg(case, volume, outcome.labels, codes)
        except VolumeError as error:
            notes.append(f"no DICOM SEG: {error}")
    for leftover in folder.glob(".partial-*") if folder.is_dir() else ():
        leftover.unlink(missing_ok=True)  # the temporary files of a run killed while writing this case
    with AtomicOutputs() as outputs:
        write_labelmap(outputs.path_for(folder / LABELMAP_NAME), outcome.labels, volume)
        write_seg_nrrd_with_codes(outputs.path_for(folder / SEG_NRRD_NAME), outcome.labels, codes, volume)
        if seg is not None:
            seg.save_as(outputs.path_for(folder / DICOM_SEG_NAME))
    written = [folder / LABELMAP_NAME, folder / SEG_NRRD_NAME] + ([folder / DICOM_SEG_NAME] if seg else [])
    return written, notes
