"""The Slicer module's exports and `medsam3 batch` write through the one engine writer: the same segment exported
from Slicer and written by a batch reads back with the same name, codes, colour table and DICOM SEG segments."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from slicer_scene import load_volume_node, new_scene

from medsam3.apps.batch.cases import discover_cases
from medsam3.apps.cli import main
from medsam3.files.seg_nrrd import read_seg_nrrd
from medsam3.files.volume_io import read_volume
from medsam3.interaction.session import MaskUpdate

from MedicalSAM3SlicerLib import exports
from MedicalSAM3SlicerLib.segment_io import apply_update, bind_to_volume
from MedicalSAM3SlicerLib.terminology import apply_to_segment, default_table

from batch_backends import bright_voxel, oracle_backend_factory
from cases import data_path

SERIES_WITH_UIDS = "ct/dcmqi_3slice/ct-3slice"
TYPED = "sin kidney"


@pytest.fixture(scope="module")
def batch_and_slicer(tmp_path_factory):
    """A batch result for one click named "sin kidney", and the same mask as a Slicer segment typed the same."""
    root = tmp_path_factory.mktemp("match")
    series = data_path(SERIES_WITH_UIDS)
    volume = read_volume(series)
    i, j, k = bright_voxel(volume)
    prompts = root / "clicks.csv"
    prompts.write_text(f"case,kind,x,y,z,space,name\n{series.name},point,{i},{j},{k},ijk,{TYPED}\n")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["batch", str(series), "--prompts", str(prompts), "--output", str(root / "batch")],
                    backend_factory=oracle_backend_factory) == 0
    batch = root / "batch" / series.name
    labels = read_volume(batch / "labelmap.nii.gz").array
    assert labels.any()

    scene = new_scene()
    volume_node = load_volume_node(scene, volume, root, "CT")
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    bind_to_volume(segmentation_node, volume_node)
    segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", TYPED)
    apply_to_segment(segmentation_node.GetSegmentation().GetSegment(segment_id), default_table().resolve(TYPED))
    mask = labels == 1
    apply_update(MaskUpdate(0, (0, mask.shape[0], 0, mask.shape[1], 0, mask.shape[2]), mask), segmentation_node,
                 segment_id, volume_node)
    [case] = discover_cases([series])
    return batch, segmentation_node, volume_node, case.files, root


def test_labelmap_and_colour_table_equal_the_batchs(batch_and_slicer):
    batch, segmentation_node, volume_node, _, root = batch_and_slicer
    report = exports.export_labelmap(segmentation_node, volume_node, root / "slicer_labelmap.nii.gz")
    assert report.exported == ["Left kidney"]
    assert report.extra_files[0].read_bytes() == (batch / "labelmap.labels.csv").read_bytes()
    np.testing.assert_array_equal(read_volume(report.path).array, read_volume(batch / "labelmap.nii.gz").array)


def test_seg_nrrd_through_slicer_carries_the_batchs_name_colour_and_codes(batch_and_slicer):
    batch, segmentation_node, _, _, root = batch_and_slicer
    report = exports.export_seg_nrrd(segmentation_node, root / "slicer.seg.nrrd")
    slicer_file, batch_file = read_seg_nrrd(report.path), read_seg_nrrd(batch / "segmentation.seg.nrrd")
    assert slicer_file.segment_names == batch_file.segment_names == ("Left kidney",)
    assert slicer_file.terminologies == batch_file.terminologies
    assert "SCT^64033007^Kidney~SCT^7771000^Left" in batch_file.terminologies[0]
    np.testing.assert_allclose(slicer_file.colours, batch_file.colours, atol=1e-5)


def test_dicom_seg_reads_back_with_the_batchs_segments_codes_and_frames(batch_and_slicer):
    import highdicom as hd

    batch, segmentation_node, volume_node, files, root = batch_and_slicer
    report = exports.export_dicom_seg(segmentation_node, volume_node, root / "slicer.dcm", source_files=files)

    def content(path):
        seg = hd.seg.segread(path)
        descriptions = []
        for d in seg.SegmentSequence:
            type_ = d.SegmentedPropertyTypeCodeSequence[0]
            descriptions.append((d.SegmentLabel, d.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
                                 type_.CodeValue, type_.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue))
        sources = sorted(i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence)
        return descriptions, sources, seg.get_pixels_by_source_instance(sources, segment_numbers=[1])

    (descriptions, sources, pixels) = content(report.path)
    (batch_descriptions, batch_sources, batch_pixels) = content(batch / "segmentation.dcm")
    assert descriptions == batch_descriptions == [("Left kidney", "123037004", "64033007", "7771000")]
    assert sources == batch_sources
    np.testing.assert_array_equal(pixels, batch_pixels)
    assert pixels.any()
