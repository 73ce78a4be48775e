"""DICOM SEG on Slicer 5.10 (issue 17): that Slicer's pydicom 2.4.4 cannot run the module's highdicom writer; where
the QuantitativeReporting extension is installed its DICOMSegmentationExporter writes the file (called as its own
DICOM plugin calls it), otherwise the user gets one line saying what to do, and nothing is written."""

from __future__ import annotations

import pytest

from medsam3.errors import VolumeError

from MedicalSAM3SlicerLib import dicom_seg_export

from slicer_versions import SLICER_5_10, versions
from slicer_dicom_scene import NAMES, dicom_scene  # noqa: F401  (the fixture)

NEWER_SLICER = {**SLICER_5_10, "pydicom": "3.0.2", "highdicom": "0.27.0", "numpy": "2.4.6"}


class ExporterStandIn:
    """QuantitativeReporting's DICOMSegmentationExporter as far as the module uses it: it reads the series from the
    segmentation's reference volume, as the real one does, and writes a file."""

    calls = []

    def __init__(self, segmentation_node, content_creator_name=None):
        self.segmentation_node = segmentation_node
        self.calls.append(("created", content_creator_name))

    def export(self, output_directory, seg_file_name, metadata, segmentIDs=None, skipEmpty=False):  # noqa: N803
        node = self.segmentation_node
        volume = node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole())
        assert volume is not None and volume.GetAttribute("DICOM.instanceUIDs")
        names = [node.GetSegmentation().GetSegment(segment_id).GetName() for segment_id in segmentIDs]
        self.calls.append(("export", output_directory, seg_file_name, names, skipEmpty, metadata))
        (__import__("pathlib").Path(output_directory) / seg_file_name).write_bytes(b"DICM stand-in")

    def cleanup(self):
        self.calls.append(("cleanup",))


def test_the_route_is_highdicom_on_a_newer_slicer_quantitative_reporting_or_one_line_on_5_10():
    assert dicom_seg_export.dicom_seg_route(versions(NEWER_SLICER), ExporterStandIn) == ("highdicom", "")
    assert dicom_seg_export.dicom_seg_route(versions(SLICER_5_10), ExporterStandIn) == ("QuantitativeReporting", "")
    route, message = dicom_seg_export.dicom_seg_route(versions(SLICER_5_10), None)
    assert route == "none" and "QuantitativeReporting" in message and ".seg.nrrd" in message
    assert "2.4.4" in message and "\n" not in message


def test_the_plugin_is_found_by_its_module_name_when_the_extension_is_installed():
    class Plugin:
        DICOMSegmentationExporter = ExporterStandIn

    def import_module(name):
        if name != "DICOMSegmentationPlugin":
            raise ImportError(name)
        return Plugin

    def not_installed(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    assert dicom_seg_export.quantitative_reporting_exporter(import_module) is ExporterStandIn
    assert dicom_seg_export.quantitative_reporting_exporter(not_installed) is None


def test_on_5_10_with_quantitative_reporting_its_exporter_writes_the_non_empty_segments(  # noqa: F811
        dicom_scene, tmp_path):
    scene, volume_node, segmentation_node, masks, files = dicom_scene
    ExporterStandIn.calls = []
    report = dicom_seg_export.export_dicom_seg(segmentation_node, volume_node, tmp_path / "out.dcm",
                                               version_of=versions(SLICER_5_10), exporter_class=ExporterStandIn)
    assert report.path == tmp_path / "out.dcm" and report.path.read_bytes() == b"DICM stand-in"
    assert report.exported == NAMES and report.skipped == [("Pancreas", "the segment is empty")]
    created, export, cleanup = ExporterStandIn.calls
    assert created == ("created", "MedicalSAM3Slicer") and cleanup == ("cleanup",)
    assert export[1:5] == (str(tmp_path), "out.dcm", NAMES, True)


def test_on_5_10_without_quantitative_reporting_one_line_and_no_file(dicom_scene, tmp_path):  # noqa: F811
    scene, volume_node, segmentation_node, masks, files = dicom_scene
    with pytest.raises(VolumeError) as refused:
        dicom_seg_export.export_dicom_seg(segmentation_node, volume_node, tmp_path / "out.dcm",
                                          version_of=versions(SLICER_5_10), exporter_class=None)
    assert "QuantitativeReporting" in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "out.dcm").exists()


def test_a_volume_not_from_dicom_is_refused_before_the_exporter_runs(dicom_scene, tmp_path):  # noqa: F811
    scene, volume_node, segmentation_node, masks, files = dicom_scene
    uids = volume_node.GetAttribute("DICOM.instanceUIDs")
    volume_node.SetAttribute("DICOM.instanceUIDs", "")
    ExporterStandIn.calls = []
    try:
        with pytest.raises(VolumeError, match="not loaded from DICOM"):
            dicom_seg_export.export_dicom_seg(segmentation_node, volume_node, tmp_path / "out.dcm",
                                              version_of=versions(SLICER_5_10), exporter_class=ExporterStandIn)
    finally:
        volume_node.SetAttribute("DICOM.instanceUIDs", uids)
    assert ExporterStandIn.calls == []
