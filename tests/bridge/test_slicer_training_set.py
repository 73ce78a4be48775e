"""*Add to training set* writes the Slicer volume and its named segments as a case that ``medsam3 finetune`` and
``medsam3 evaluate`` read back equal: voxels, geometry, every segment at its folder-wide label value."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsam3.apps.evaluation.datasets import open_dataset
from medsam3.errors import VolumeError
from medsam3.training.slices import training_structures

from MedicalSAM3SlicerLib.training_set import add_to_training_set
from MedicalSAM3SlicerLib.volume_nodes import local_ijk_to_ras, voxel_array

from slicer_dicom_scene import NAMES, dicom_scene  # noqa: F401  (the fixture)


def test_two_added_cases_read_back_as_a_training_set(dicom_scene, tmp_path):
    scene, volume_node, segmentation_node, masks, _ = dicom_scene
    first = add_to_training_set(volume_node, segmentation_node, tmp_path / "training")
    second = add_to_training_set(volume_node, segmentation_node, tmp_path / "training")
    assert first.segments == NAMES  # the empty Pancreas segment is left out
    assert second.case_id == first.case_id + "_2" and first.image.exists()  # nothing overwritten

    dataset = open_dataset(tmp_path / "training")
    assert [s.name for s in dataset.structures] == NAMES
    assert json.loads((tmp_path / "training" / "labels.json").read_text()) == \
        {str(n): name for n, name in enumerate(NAMES, start=1)}
    case = dataset.cases[0].load()
    np.testing.assert_array_equal(case.volume.array, voxel_array(volume_node))
    np.testing.assert_allclose(case.volume.ijk_to_ras, local_ijk_to_ras(volume_node), atol=1e-4)
    for structure in dataset.structures:
        np.testing.assert_array_equal(case.labels == structure.value, masks[structure.name])
    prompts = [s.prompt for s in training_structures([(s.value, s.name) for s in dataset.structures])]
    assert prompts[:2] == ["Liver", "Spleen"]  # the names finetune asks the model for


def test_an_empty_segmentation_is_refused_and_nothing_is_written(dicom_scene, tmp_path):
    scene, volume_node, _, _, _ = dicom_scene
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    with pytest.raises(VolumeError, match="no segments"):
        add_to_training_set(volume_node, empty, tmp_path / "training")
    assert not (tmp_path / "training").exists()
