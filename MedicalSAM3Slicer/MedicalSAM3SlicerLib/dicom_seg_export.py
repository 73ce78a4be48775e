"""DICOM SEG from the module's *Export*: the module's own writer where this Slicer has pydicom 3 and highdicom, else
Slicer users' usual exporter, the QuantitativeReporting extension's, else one line saying what to do.

Slicer 5.10 ships pydicom 2.4.4, so the module's highdicom writer (:func:`.exports.export_dicom_seg`) cannot run
there (:func:`.exports.dicom_seg_unavailable`). The QuantitativeReporting extension (QIICR) installs the DICOM
plugin ``DICOMSegmentationPlugin``, whose ``DICOMSegmentationExporter(segmentationNode, contentCreatorName)``
writes a DICOM SEG with dcmqi's ``itkimage2segimage`` command-line module:
``exporter.export(outputDirectory, segFileName, metadata, segmentIDs=None, skipEmpty=False)``, then
``exporter.cleanup()`` (DICOMPlugins/DICOMSegmentationPlugin.py; its own DICOM export dialog calls it this way). It
reads the source series from the volume the segmentation references as its geometry (the
``referenceImageGeometryRef`` node reference) and that volume's ``DICOM.instanceUIDs`` in Slicer's DICOM database.
That exporter labels segments without a ``DICOM.SegmentAlgorithmType`` tag MANUAL.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from medsam3.errors import VolumeError

from . import exports

HIGHDICOM, QUANTITATIVE_REPORTING, NONE = "highdicom", "QuantitativeReporting", "none"
PLUGIN_MODULE = "DICOMSegmentationPlugin"  # QuantitativeReporting's DICOM plugin, on sys.path when installed
SERIES_DESCRIPTION = "MedicalSAM3 segmentation"


def quantitative_reporting_exporter(import_module=importlib.import_module):
    """QuantitativeReporting's ``DICOMSegmentationExporter`` class, or None when that extension is not installed."""
    try:
        return import_module(PLUGIN_MODULE).DICOMSegmentationExporter
    except (ImportError, AttributeError):
        return None


def dicom_seg_route(version_of=None, exporter_class=None) -> tuple[str, str]:
    """Which writer makes the DICOM SEG here, and "" or one line saying why none can (and what to do)."""
    unavailable = exports.dicom_seg_unavailable(version_of)
    if not unavailable:
        return HIGHDICOM, ""
    if exporter_class is not None:
        return QUANTITATIVE_REPORTING, ""
    return NONE, (f"{unavailable} Or install the QuantitativeReporting extension (Extensions Manager): the module "
                  "then exports DICOM SEG through it.")


def export_dicom_seg(segmentation_node, volume_node, path, segment_ids=None, version_of=None,
                     exporter_class="find", source_files=None) -> exports.ExportReport:
    """Write a DICOM SEG of the segments (empty ones are left out and listed) referencing the volume's series.
    ``source_files``: that series' files where no DICOM database knows them (``medsam3 web`` read the folder
    itself); by default Slicer's DICOM database is asked (:func:`.exports.dicom_source_files`)."""
    if exporter_class == "find":
        exporter_class = quantitative_reporting_exporter()
    route, message = dicom_seg_route(version_of, exporter_class)
    if route == HIGHDICOM:
        return exports.export_dicom_seg(segmentation_node, volume_node, path, source_files=source_files,
                                        segment_ids=segment_ids)
    if route == NONE:
        raise VolumeError(message)
    path = Path(path)
    exports.dicom_source_files(volume_node)  # a volume not loaded from DICOM is refused in one line, first
    role = segmentation_node.GetReferenceImageGeometryReferenceRole()
    referenced = segmentation_node.GetNodeReference(role)
    if referenced is not None and referenced is not volume_node:
        raise VolumeError(f"The segmentation '{segmentation_node.GetName()}' was made on '{referenced.GetName()}', "
                          f"not on '{volume_node.GetName()}': choose that volume as source volume to export it.")
    if referenced is None:  # the exporter finds the series through this reference
        segmentation_node.SetNodeReferenceID(role, volume_node.GetID())
    segments, skipped = exports.collect_segments(segmentation_node, volume_node, segment_ids)
    if not segments:
        raise VolumeError("There is nothing to export: every segment is empty.")
    exporter = exporter_class(segmentation_node, "MedicalSAM3Slicer")
    try:
        exporter.export(str(path.parent), path.name, {"SeriesDescription": SERIES_DESCRIPTION},
                        segmentIDs=[segment.segment_id for segment in segments], skipEmpty=True)
    except ValueError as error:  # its refusals (missing files, terminology) are ValueErrors with a message
        raise VolumeError(f"QuantitativeReporting's DICOM SEG export refused: {error}") from error
    finally:
        exporter.cleanup()
    if not path.is_file():
        raise VolumeError(f"QuantitativeReporting's DICOM SEG export wrote no {path.name}; see the error log.")
    return exports.ExportReport(path, [segment.name for segment in segments], skipped)
