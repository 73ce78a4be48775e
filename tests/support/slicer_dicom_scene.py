"""The TotalSegmentator DICOM series loaded through MRML with three coded segments, as the DICOM module would leave
it: the module-scoped ``dicom_scene`` fixture of the bridge's export tests (test_slicer_exports.py and
test_slicer_dicom_seg_route.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slicer_scene import load_volume_node, new_scene, slicer

from medsam3.interaction.session import MaskUpdate
from medsam3.files.volume_io import ijk_to_ras_from_image, read_image, read_volume

from MedicalSAM3SlicerLib.segment_io import apply_update, bind_to_volume
from MedicalSAM3SlicerLib.terminology import apply_to_segment, default_table
from MedicalSAM3SlicerLib.volume_nodes import local_ijk_to_ras

from cases import data_path

SERIES = "ct/totalseg_example/dicom_series"
TARGETS = {"liver": 5, "spleen": 1, "adrenal gland R": 8}  # typed name -> TotalSegmentator v2 label


class DicomDatabaseStandIn:
    """What Slicer's DICOM database answers for the instances of a loaded series."""

    def __init__(self, files_by_uid):
        self.files_by_uid = files_by_uid

    def fileForInstance(self, uid):  # noqa: N802  (Slicer's name)
        return self.files_by_uid.get(uid, "")


def identified_copies(files, directory: Path) -> list[str]:
    """The shared series was anonymised down to empty SOP Instance / SOP Class / Study / Series Instance UIDs, which no
    DICOM database accepts. Copies get them back: the SOP UIDs from each file's meta header, one study and one series UID."""
    import pydicom

    study_uid = pydicom.uid.generate_uid(entropy_srcs=["medsam3 test study"])
    series_uid = pydicom.uid.generate_uid(entropy_srcs=["medsam3 test series"])
    copies = []
    for file in files:
        dataset = pydicom.dcmread(file)
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_uid
        copies.append(str(directory / Path(file).name))
        dataset.save_as(copies[-1])
    return copies


@pytest.fixture(scope="module")
def dicom_scene(tmp_path_factory):
    """The TotalSegmentator DICOM series loaded through MRML, with liver, spleen, right adrenal gland and an empty
    segment, as the DICOM module would leave it (instance UIDs on the node, files in the database)."""
    import pydicom
    import SimpleITK as sitk

    scene = new_scene()
    files = identified_copies(sorted(data_path(SERIES).iterdir()), tmp_path_factory.mktemp("series"))
    # slicer-core has no DICOM module: the series is read with SimpleITK (sorted by position, as the DICOM
    # module sorts it) and loaded through a volume storage node
    volume_node = load_volume_node(scene, read_volume(data_path(SERIES)), tmp_path_factory.mktemp("dicom"),
                                   "CT series")
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}
    volume_node.SetAttribute("DICOM.instanceUIDs", " ".join(uids))
    slicer.dicomDatabase = DicomDatabaseStandIn(uids)

    # the reference labels are stored with the rows reversed: bring them onto the series' grid (nearest voxel)
    labels_image = sitk.Resample(sitk.ReadImage(str(data_path("ct/totalseg_example/dicom_series_seg_v2.nii.gz"))),
                                 read_image(data_path(SERIES)), sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_allclose(ijk_to_ras_from_image(labels_image), local_ijk_to_ras(volume_node), atol=1e-3)
    labels = sitk.GetArrayFromImage(labels_image)

    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    bind_to_volume(segmentation_node, volume_node)
    masks = {}
    for typed, value in [*TARGETS.items(), ("pancreas", None)]:
        segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", typed)
        apply_to_segment(segmentation_node.GetSegmentation().GetSegment(segment_id), default_table().resolve(typed))
        mask = labels == value if value is not None else np.zeros(labels.shape, dtype=bool)
        if value is not None:
            assert mask.any()
            apply_update(MaskUpdate(0, (0, mask.shape[0], 0, mask.shape[1], 0, mask.shape[2]), mask),
                         segmentation_node, segment_id, volume_node)
        masks[default_table().resolve(typed).name] = mask
    yield scene, volume_node, segmentation_node, masks, files
    del slicer.dicomDatabase


NAMES = ["Liver", "Spleen", "Right adrenal gland"]
TYPES = {"Liver": "10200004", "Spleen": "78961009", "Right adrenal gland": "23451007"}
