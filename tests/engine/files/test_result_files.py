"""The one writer of result files, read back (issue 23 mutation testing of files/outputs.py): the colour table's rows
(background, colours rounded to 0-255, codes), each segment's colour the same in the colour table, the .seg.nrrd
and the overlay, a DICOM SEG made only from images it can reference, with its algorithm type, and the notes a
user reads when one cannot be made."""

from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest

from medsam3 import __version__
from medsam3.errors import VolumeError, missing_extra
from medsam3.files import outputs
from medsam3.files.outputs import (CodedSegment, ResultFiles, coded_segment, dicom_seg, label_masks,
                                   write_colour_table, write_result_files)
from medsam3.files.seg_nrrd import read_seg_nrrd
from medsam3.files.segment_colours import segment_colour
from medsam3.files.volume_io import read_volume
from medsam3.geometry.volume import LPS_TO_RAS, Volume

from cases import data_path
from server_harness import mask_colour_pixels

SERIES = "ct/dcmqi_3slice/ct-3slice"  # three CT images with every UID a DICOM SEG references
NAMES = ["spleen", "my blob", "other blob"]  # a known structure, then two names the terminology does not know


@pytest.fixture(scope="module")
def series():
    folder = data_path(SERIES)
    return read_volume(folder), sorted(folder.glob("*.dcm"))


def labels_of(volume: Volume) -> np.ndarray:
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[:, 100:200, 100:200] = 1
    labels[1:, 300:340, 300:360] = 2
    labels[2, 10:20, 400:420] = 3
    return labels


def rgb255(colour) -> list[float]:
    return [float(int(c * 255 + 0.5)) for c in colour]


def test_the_colour_table_rows_read_back_with_background_colours_and_codes(tmp_path):
    segment = CodedSegment("Tumour", (0.5, 0.25, 1.0), "ctx", ("SCT", "49755003", "Altered"),
                           ("SCT", "108369006", "Neoplasm"))
    path = write_colour_table(tmp_path / "t.labels.csv", [segment, coded_segment("sin kidney", 1)])
    assert b"\r" not in path.read_bytes()  # lines end as Slicer writes them
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream, quoting=csv.QUOTE_NONNUMERIC))
    assert rows[0][:6] == ["LabelValue", "Name", "Color_R", "Color_G", "Color_B", "Color_A"] and len(rows[0]) == 21
    assert rows[1] == [0.0, "Background", 0.0, 0.0, 0.0, 0.0] + [""] * 15
    assert rows[2] == [1.0, "Tumour", 128.0, 64.0, 255.0, 255.0, "SCT", "49755003", "Altered", "SCT", "108369006",
                       "Neoplasm"] + [""] * 9
    kidney = coded_segment("sin kidney", 1)
    assert rows[3][:6] == [2.0, "Left kidney", *rgb255(kidney.colour), 255.0]
    assert rows[3][6:15] == [*kidney.category, *kidney.type, "SCT", "7771000", "Left"] and rows[3][15:] == [""] * 6


def test_each_segment_has_one_colour_in_every_file(series, tmp_path):
    volume, _ = series
    labels = labels_of(volume)
    steps = []

    class Timer:
        def step(self, name):
            import contextlib
            steps.append(name)
            return contextlib.nullcontext()

    files = ResultFiles.in_folder(tmp_path, overlay=True)
    written, notes = write_result_files(files, labels, volume, NAMES, overlay_title="case 7", timer=Timer())
    assert notes == [] and steps == ["write", "overlay"]
    assert written == [tmp_path / "labelmap.nii.gz", tmp_path / "labelmap.labels.csv",
                       tmp_path / "segmentation.seg.nrrd", tmp_path / "overlay.png"]
    expected = [coded_segment(name, index).colour for index, name in enumerate(NAMES)]
    # unknown names take the palette colour of their position; the spleen its terminology colour
    assert [rgb255(c) for c in expected[1:]] == [[float(v) for v in segment_colour(i)] for i in (1, 2)]
    assert rgb255(expected[0]) != [float(v) for v in segment_colour(0)]
    with open(tmp_path / "labelmap.labels.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream, quoting=csv.QUOTE_NONNUMERIC))[2:]
    assert [row[1] for row in rows] == ["Spleen", "My blob", "Other blob"]
    assert [row[2:5] for row in rows] == [rgb255(c) for c in expected]
    read = read_seg_nrrd(tmp_path / "segmentation.seg.nrrd")
    assert read.segment_names == ("Spleen", "My blob", "Other blob")
    np.testing.assert_allclose(read.colours, expected, atol=1e-6)
    np.testing.assert_array_equal(read.labels.array, labels)
    for index, name in enumerate(NAMES[:2]):  # (the third is off the overlay's slices)
        assert mask_colour_pixels(tmp_path / "overlay.png", name, index) > 0, name


def test_without_dicom_sources_or_highdicom_the_note_says_why_and_the_other_files_are_written(series, tmp_path,
                                                                                               monkeypatch):
    volume, _ = series
    files = ResultFiles.in_folder(tmp_path / "a", overlay=False, dicom_seg=True)
    written, notes = write_result_files(files, labels_of(volume), volume, NAMES)
    assert notes == ["no DICOM SEG: the input is not a DICOM series, so a DICOM SEG has no images to reference."]
    assert [p.name for p in written] == ["labelmap.nii.gz", "labelmap.labels.csv", "segmentation.seg.nrrd"]
    assert all(p.is_file() for p in written) and not (tmp_path / "a" / "segmentation.dcm").exists()

    def no_highdicom(*_args, **_kwargs):
        raise ModuleNotFoundError("No module named 'highdicom'", name="highdicom")

    monkeypatch.setattr(outputs, "dicom_seg", no_highdicom)
    _, notes = write_result_files(ResultFiles.in_folder(tmp_path / "b", overlay=False, dicom_seg=True),
                                  labels_of(volume), volume, NAMES, source_files=series[1])
    expected = missing_extra(ModuleNotFoundError(name="highdicom"), "A DICOM SEG")
    assert expected is not None and notes == [f"no DICOM SEG: {expected}"]
    assert str(expected).startswith("A DICOM SEG needs highdicom")


def test_a_dicom_seg_is_automatic_unless_said_and_reads_back_on_its_frames(series, tmp_path):
    import highdicom as hd

    volume, files = series
    labels = labels_of(volume)
    segments = [coded_segment(name, index) for index, name in enumerate(NAMES)]
    seg = dicom_seg(files, volume, label_masks(labels, 3), segments)
    assert [d.SegmentAlgorithmType for d in seg.SegmentSequence] == ["AUTOMATIC"] * 3
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["Spleen", "My blob", "Other blob"]
    assert [(d.SegmentedPropertyCategoryCodeSequence[0].CodingSchemeDesignator,
             d.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator) for d in seg.SegmentSequence] == \
        [(s.category[0], s.type[0]) for s in segments]
    modifier = seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    assert "SegmentedPropertyTypeModifierCodeSequence" not in modifier  # the spleen has none
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("MedicalSAM3Slicer", __version__)
    assert (seg.Manufacturer, seg.ManufacturerModelName, seg.SoftwareVersions, seg.DeviceSerialNumber,
            seg.SeriesDescription, seg.SeriesNumber, seg.InstanceNumber) == (
        "MedicalSAM3Slicer", "Medical SAM3", __version__, "0", "MedicalSAM3 segmentation", 300, 1)
    assert seg.NumberOfFrames == 3 * len(files)  # every slice of every segment, empty ones too
    saved = tmp_path / "seg.dcm"
    seg.save_as(saved)
    read = hd.seg.segread(saved)
    slice_of = {}
    for file in files:
        position = pydicom.dcmread(file, stop_before_pixels=True)
        ijk = volume.ras_to_ijk @ LPS_TO_RAS @ np.r_[np.asarray(position.ImagePositionPatient, float), 1.0]
        slice_of[position.SOPInstanceUID] = int(round(ijk[2]))
    sources = sorted(slice_of, key=slice_of.get)
    pixels = read.get_pixels_by_source_instance(sources, segment_numbers=[1, 2, 3])
    np.testing.assert_array_equal(np.moveaxis(pixels, -1, 0) > 0, [labels == n for n in (1, 2, 3)])
    kidney = dicom_seg(files, volume, label_masks(labels, 1), [coded_segment("sin kidney", 0)])
    coded = kidney.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
    assert (coded.CodingSchemeDesignator, coded.CodeValue, coded.CodeMeaning) == ("SCT", "7771000", "Left")
    semi = dicom_seg(files, volume, label_masks(labels, 3), segments, automatic=False)
    assert [d.SegmentAlgorithmType for d in semi.SegmentSequence] == ["SEMIAUTOMATIC"] * 3


def _copies(files, tmp_path, change) -> list:
    copies = []
    for index, file in enumerate(files):
        dataset = pydicom.dcmread(file)
        change(dataset, index)
        copies.append(tmp_path / file.name)
        dataset.save_as(copies[-1])
    return copies


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
                                     "FrameOfReferenceUID"])
def test_images_without_a_uid_give_no_dicom_seg_and_say_which(series, tmp_path, keyword):
    volume, files = series
    masks = label_masks(labels_of(volume), 1)
    message = (f"the source DICOM images have no {keyword} (they were anonymised without it), so a DICOM SEG cannot "
               "reference them; a labelmap or .seg.nrrd holds the segments instead.")
    for how, change in (("missing", lambda d, i: delattr(d, keyword) if i == 1 else None),
                        ("blank", lambda d, i: setattr(d, keyword, "") if i == 2 else None)):
        (tmp_path / how).mkdir()
        with pytest.raises(VolumeError) as refused:
            dicom_seg(_copies(files, tmp_path / how, change), volume, masks, [coded_segment("spleen", 0)])
        assert str(refused.value) == message, how


def test_a_character_set_missing_or_blank_is_the_default_one(series, tmp_path):
    volume, files = series
    masks = label_masks(labels_of(volume), 1)
    for how, change in (("missing", lambda d, i: delattr(d, "SpecificCharacterSet")
                         if "SpecificCharacterSet" in d else None),
                        ("blank", lambda d, i: setattr(d, "SpecificCharacterSet", ""))):
        (tmp_path / how).mkdir()
        seg = dicom_seg(_copies(files, tmp_path / how, change), volume, masks, [coded_segment("spleen", 0)])
        assert len(seg.SegmentSequence) == 1


GRID = ("the volume's voxel grid differs from its DICOM images (it was resampled or reoriented), so a DICOM SEG "
        "cannot be made on it.")


@pytest.mark.parametrize("how", ["rows reversed", "columns reversed", "rows turned back", "columns turned back",
                                 "half a voxel off", "0.02 voxel off"])
def test_a_volume_off_its_images_grid_gives_no_dicom_seg(series, how):
    volume, files = series
    matrix = volume.ijk_to_ras.copy()
    size = np.array(volume.array.shape[::-1])
    if how == "rows reversed":  # i runs the other way: the same voxels, flipped
        matrix[:3, 3] += matrix[:3, 0] * (size[0] - 1)
        matrix[:3, 0] *= -1
    elif how == "columns reversed":
        matrix[:3, 3] += matrix[:3, 1] * (size[1] - 1)
        matrix[:3, 1] *= -1
    elif how.endswith("turned back"):  # the first voxel still on the images' first pixel, the axis the other way
        matrix[:3, 0 if how.startswith("rows") else 1] *= -1
    else:
        matrix[:3, 3] += matrix[:3, 0] * (0.5 if how.startswith("half") else 0.02)
    moved = Volume(volume.array, matrix)
    with pytest.raises(VolumeError) as refused:
        dicom_seg(files, moved, label_masks(labels_of(volume), 1), [coded_segment("spleen", 0)])
    assert str(refused.value) == GRID
    shifted = volume.ijk_to_ras.copy()
    shifted[:3, 3] += volume.ijk_to_ras[:3, 0] * 0.005  # within rounding of the image positions: accepted
    assert dicom_seg(files, Volume(volume.array, shifted), label_masks(labels_of(volume), 1),
                     [coded_segment("spleen", 0)]) is not None


def test_a_segment_keeps_its_slicer_terminology_entry_and_one_without_is_coded_from_its_name():
    kidney = coded_segment("sin kidney", 0)
    assert CodedSegment.from_serialized(kidney.name, kidney.colour, kidney.serialized()) == kidney
    custom = CodedSegment("Lesion 2", (0.1, 0.2, 0.3), "My context", ("SCT", "49755003", "Altered"),
                          ("SCT", "108369006", "Neoplasm"), ("SCT", "24028007", "Right"))
    assert custom.serialized() == ("My context~SCT^49755003^Altered~SCT^108369006^Neoplasm~SCT^24028007^Right~~^^~^^")
    assert CodedSegment.from_serialized("Lesion 2", (0.1, 0.2, 0.3), custom.serialized()) == custom
    drawn = CodedSegment.from_serialized("left kidney drawn", (0.5, 0.5, 0.0), "")  # drawn by hand: no entry
    assert (drawn.name, drawn.colour) == ("left kidney drawn", (0.5, 0.5, 0.0))
    # a known name gets the terminology's codes, with the name and colour it has
    assert CodedSegment.from_serialized("Left kidney", (1.0, 0.0, 0.0), "") == CodedSegment(
        "Left kidney", (1.0, 0.0, 0.0), *[getattr(coded_segment("left kidney", 0), f) for f in
                                          ("context", "category", "type", "modifier")])
    assert coded_segment("left kidney", 0).modifier[1] == "7771000"


def test_names_are_coded_in_label_order_and_a_labelmap_name_needs_an_image_suffix(tmp_path):
    assert outputs.coded_segments(["spleen", "my blob", "other blob"]) == [
        coded_segment(name, index) for index, name in enumerate(NAMES)]
    assert outputs.colour_table_path(tmp_path / "a.NII.GZ") == tmp_path / "a.labels.csv"
    with pytest.raises(VolumeError) as refused:
        outputs.colour_table_path(tmp_path / "labels.txt")
    assert str(refused.value) == (f"{tmp_path / 'labels.txt'}: choose a .nii.gz, .nii, .nrrd or .mha file name for a "
                                  "labelmap.")


def test_a_labelmap_gets_its_colour_table_beside_it(series, tmp_path):
    volume, _ = series
    written = outputs.write_labelmap_with_table(tmp_path / "case.nrrd", labels_of(volume), volume,
                                                outputs.coded_segments(NAMES))
    assert written == [tmp_path / "case.nrrd", tmp_path / "case.labels.csv"] and all(p.is_file() for p in written)
