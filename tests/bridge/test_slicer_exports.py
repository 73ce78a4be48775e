"""Exports read back equal to the segments, with names and SNOMED CT codes; nothing is dropped silently."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medsam3.errors import VolumeError
from medsam3.files.volume_io import ijk_to_ras_from_image

from MedicalSAM3SlicerLib import exports
from MedicalSAM3SlicerLib.segment_io import segment_mask
from MedicalSAM3SlicerLib.terminology import segment_tag
from MedicalSAM3SlicerLib.volume_nodes import local_ijk_to_ras

from slicer_dicom_scene import NAMES, TYPES, dicom_scene  # noqa: F401  (the fixture)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_labelmap_export_reads_back_with_names_and_codes(dicom_scene, tmp_path, suffix):
    import SimpleITK as sitk

    scene, volume_node, segmentation_node, masks, _ = dicom_scene
    report = exports.export_labelmap(segmentation_node, volume_node, tmp_path / f"labels{suffix}")

    assert report.exported == NAMES
    assert report.skipped == [("Pancreas", "the segment is empty")]
    image = sitk.ReadImage(str(report.path))
    np.testing.assert_allclose(ijk_to_ras_from_image(image), local_ijk_to_ras(volume_node), atol=1e-4)
    labels = sitk.GetArrayFromImage(image)
    # Slicer's name for a labelmap's colour table (vtkSlicerSegmentationsModuleLogic.cxx: "<name>.labels.csv")
    assert report.extra_files == [tmp_path / "labels.labels.csv"]
    rows = list(csv.DictReader(open(report.extra_files[0])))
    by_value = {int(row["LabelValue"]): row for row in rows}
    for value, name in enumerate(NAMES, start=1):
        np.testing.assert_array_equal(labels == value, masks[name])
        assert by_value[value]["Name"] == name
        assert by_value[value]["Type_CodeValue"] == TYPES[name]
    assert by_value[3]["TypeModifier_CodeMeaning"] == "Right"


def test_overlapping_segments_are_refused_for_a_labelmap(dicom_scene, tmp_path):
    scene, volume_node, segmentation_node, masks, _ = dicom_scene
    segmentation = segmentation_node.GetSegmentation()
    liver = segmentation.GetSegmentIdBySegmentName("Liver")
    spleen = segmentation.GetSegmentIdBySegmentName("Spleen")
    with pytest.raises(VolumeError, match="overlap"):
        exports.export_labelmap(segmentation_node, volume_node, tmp_path / "overlap.nrrd", [liver, liver])
    with pytest.raises(VolumeError, match="empty"):
        exports.export_labelmap(segmentation_node, volume_node, tmp_path / "empty.nrrd",
                                [segmentation.GetSegmentIdBySegmentName("Pancreas")])
    assert exports.export_labelmap(segmentation_node, volume_node, tmp_path / "two.nrrd", [spleen, liver]).exported \
        == ["Spleen", "Liver"]


def test_seg_nrrd_reads_back_in_slicer_with_names_codes_and_voxels(dicom_scene, tmp_path):
    scene, volume_node, segmentation_node, masks, _ = dicom_scene
    report = exports.export_seg_nrrd(segmentation_node, tmp_path / "result.seg.nrrd")
    assert report.exported == [*NAMES, "Pancreas"]  # .seg.nrrd keeps the empty segment

    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(report.path))
    assert storage.ReadData(loaded)
    segmentation = loaded.GetSegmentation()
    for name in NAMES:
        segment_id = segmentation.GetSegmentIdBySegmentName(name)
        assert segment_id, name
        np.testing.assert_array_equal(segment_mask(loaded, segment_id, volume_node), masks[name])
        assert f"SCT^{TYPES[name]}^" in segment_tag(segmentation.GetSegment(segment_id))


def test_dicom_seg_references_the_series_and_reads_back_with_codes(dicom_scene, tmp_path):
    import highdicom as hd
    import pydicom

    scene, volume_node, segmentation_node, masks, files = dicom_scene
    report = exports.export_dicom_seg(segmentation_node, volume_node, tmp_path / "seg.dcm")

    assert report.skipped == [("Pancreas", "the segment is empty")]
    seg = hd.seg.segread(report.path)
    source_uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}
    for number, name in enumerate(NAMES, start=1):
        description = seg.get_segment_description(number)
        assert description.segment_label == name
        assert description.segmented_property_type.value == TYPES[name]
        for uid, file in source_uids.items():
            frame = seg.get_pixels_by_source_instance([uid], segment_numbers=[number])[0, ..., 0]
            position = pydicom.dcmread(file, stop_before_pixels=True).ImagePositionPatient
            k = int(round((float(position[2]) - float(local_ijk_to_ras(volume_node)[2, 3]))
                          / local_ijk_to_ras(volume_node)[2, 2]))
            np.testing.assert_array_equal(frame.astype(bool), masks[name][k])
    modifier = seg.SegmentSequence[2].SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence
    assert modifier[0].CodeValue == "24028007"


def test_dicom_seg_needs_a_dicom_source(dicom_scene, tmp_path):
    scene, volume_node, segmentation_node, masks, _ = dicom_scene
    uids = volume_node.GetAttribute("DICOM.instanceUIDs")
    volume_node.SetAttribute("DICOM.instanceUIDs", "")
    try:
        with pytest.raises(VolumeError, match="not loaded from DICOM"):
            exports.export_dicom_seg(segmentation_node, volume_node, tmp_path / "seg.dcm")
    finally:
        volume_node.SetAttribute("DICOM.instanceUIDs", uids)
