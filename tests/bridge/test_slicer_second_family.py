"""The Slicer module's logic with a second model family chosen by catalogue name (issue 20): the bright-region
stand-in (``medsam3/model/bright_region``) loaded as the module loads any model (``open_backend(model=...)``) segments
the spleen CT of ../shared/data from a click on real MRML nodes, and what the family does not serve is refused in
one line, before any slice is encoded, leaving the segmentation as it was."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from slicer_scene import add_points, load_volume_node, new_scene, world_of_voxel

from medsam3.model.capabilities import CapabilityError
from medsam3.transports.backend_choice import open_backend

from MedicalSAM3SlicerLib.logic import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.segment_io import segment_mask

from cases import load_case
from placement import dice


@pytest.fixture
def spleen_scene(tmp_path):
    case = load_case("spleen")
    scene = new_scene()
    node = load_volume_node(scene, case.volume, tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    k = int(np.argmax(case.mask.sum(axis=(1, 2))))
    j, i = (int(v) for v in np.round(ndimage.center_of_mass(case.mask[k])))
    assert case.mask[k, j, i]
    return case, scene, node, segmentation, (k, j, i)


def test_the_module_logic_segments_the_spleen_with_the_bright_region_family(spleen_scene):
    case, scene, node, segmentation, (k, j, i) = spleen_scene
    logic = MedicalSAM3SlicerLogic(open_backend(model="bright-region"))
    assert logic.backend.info().model == "bright-region"
    clicks = add_points(scene, world_of_voxel(node, (i, j, k)))
    segment_id = logic.segment(node, segmentation, positive_points=clicks, view="axial",
                               whole_volume=False).segment_ids[0]
    got = segment_mask(segmentation, segment_id, node)
    labels, _ = ndimage.label(case.volume.array[k] > 40)  # the family's promise: connected voxels above 40 HU
    assert got[k, j, i] and not np.delete(got, k, axis=0).any()
    assert dice(got[k], labels == labels[j, i]) >= 0.95
    assert dice(got[k], case.mask[k]) >= 0.9


def test_a_prompt_kind_the_family_does_not_serve_is_refused_before_any_encoding(spleen_scene):
    case, scene, node, segmentation, _ = spleen_scene
    backend = open_backend(model="bright-region")
    logic = MedicalSAM3SlicerLogic(backend)
    model = backend.engine.model
    with pytest.raises(CapabilityError) as refused:
        logic.segment(node, segmentation, text="spleen")  # text through the whole volume
    message = str(refused.value)
    assert "\n" not in message and "bright-region cannot do text through the volume" in message
    assert "medical-sam3-3d" in message
    assert model.encoded == 0  # refused before any slice reached the model
    assert segmentation.GetSegmentation().GetNumberOfSegments() <= 1
    for index in range(segmentation.GetSegmentation().GetNumberOfSegments()):
        segment_id = segmentation.GetSegmentation().GetNthSegmentID(index)
        assert not segment_mask(segmentation, segment_id, node).any()
