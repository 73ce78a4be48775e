"""One writer for every result file: `medsam3 segment -o FOLDER` and `medsam3 batch` give the same files for the
same input and prompt (the same .seg.nrrd bytes, labelmap, colour table and DICOM SEG segments), and `segment -o
FOLDER` writes what its help promises."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import SimpleITK as sitk

from medsam3.apps.cli import build_parser, main
from medsam3.files.volume_io import ijk_to_ras_from_image, read_volume

from batch_backends import bright_voxel, oracle_backend_factory
from cases import data_path

SERIES_WITH_UIDS = "ct/dcmqi_3slice/ct-3slice"  # a DICOM series with its UIDs: a DICOM SEG can reference it
TYPED = "sin kidney"  # typed, it reaches the model as "Left kidney"; every file must code it Kidney + Left


def run(*arguments) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in arguments], backend_factory=oracle_backend_factory)
    assert code == 0, out.getvalue() + err.getvalue()
    return code


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same DICOM series, click and segment name through `segment -o FOLDER` and through `batch`."""
    root = tmp_path_factory.mktemp("one_writer")
    series = data_path(SERIES_WITH_UIDS)
    i, j, k = bright_voxel(read_volume(series))
    run("segment", series, "--name", TYPED, "--point", f"{i},{j},{k}", "--ijk", "-o", root / "segment")
    prompts = root / "clicks.csv"
    prompts.write_text(f"case,kind,x,y,z,space,name\n{series.name},point,{i},{j},{k},ijk,{TYPED}\n")
    run("batch", series, "--prompts", prompts, "--output", root / "batch")
    return root / "segment", root / "batch" / series.name


def test_segment_o_folder_writes_what_its_help_says(both):
    segment, _ = both
    assert sorted(p.name for p in segment.iterdir()) == ["labelmap.labels.csv", "labelmap.nii.gz", "overlay.png",
                                                         "segmentation.dcm", "segmentation.seg.nrrd"]
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["segment"].format_help().split())
    for name in ("labelmap.nii.gz", "labelmap.labels.csv", "segmentation.seg.nrrd", "overlay.png",
                 "segmentation.dcm"):
        assert name in help_text


def test_segment_and_batch_write_the_same_seg_nrrd_labelmap_and_colour_table(both):
    segment, batch = both
    assert (segment / "segmentation.seg.nrrd").read_bytes() == (batch / "segmentation.seg.nrrd").read_bytes()
    assert (segment / "labelmap.labels.csv").read_bytes() == (batch / "labelmap.labels.csv").read_bytes()
    images = [sitk.ReadImage(str(folder / "labelmap.nii.gz")) for folder in (segment, batch)]
    labels = [sitk.GetArrayFromImage(image) for image in images]
    assert labels[0].any()
    np.testing.assert_array_equal(labels[0], labels[1])
    np.testing.assert_allclose(ijk_to_ras_from_image(images[0]), ijk_to_ras_from_image(images[1]))
    # named and coded as the model was asked ("Left kidney"), not generically
    seg = sitk.ReadImage(str(segment / "segmentation.seg.nrrd"))
    assert seg.GetMetaData("Segment0_Name") == "Left kidney"
    assert "SCT^64033007^Kidney~SCT^7771000^Left" in seg.GetMetaData("Segment0_Tags")


def test_segment_and_batch_write_dicom_segs_with_the_same_segments_codes_and_frames(both):
    import highdicom as hd

    segs = [hd.seg.segread(folder / "segmentation.dcm") for folder in both]
    assert segs[0].SOPInstanceUID != segs[1].SOPInstanceUID  # two files, ...

    def content(seg):
        descriptions = [(d.SegmentLabel, d.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
                         d.SegmentedPropertyTypeCodeSequence[0].CodeValue,
                         d.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0].CodeValue)
                        for d in seg.SegmentSequence]
        sources = sorted(i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence)
        return descriptions, sources, seg.get_pixels_by_source_instance(sources, segment_numbers=[1])

    (descriptions, sources, pixels), (other_descriptions, other_sources, other_pixels) = map(content, segs)
    assert descriptions == other_descriptions == [("Left kidney", "123037004", "64033007", "7771000")]
    assert sources == other_sources
    np.testing.assert_array_equal(pixels, other_pixels)  # ... with the same content
    assert pixels.any()
