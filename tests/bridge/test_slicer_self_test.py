"""The module's in-Slicer self-test scenario (phantom + stand-in network) holds under slicer-core too."""

import numpy as np

from slicer_scene import new_scene, voxels_of

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.interaction.engine import SegmentationEngine

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.segment_io import segment_mask
from MedicalSAM3SlicerLib.self_test_model import make_phantom, self_test_model

from placement import dice


def test_phantom_click_segments_the_block_and_undo_clears_it():
    scene = new_scene()
    phantom = make_phantom(scene)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    model = self_test_model()
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(model), BackendInfo(
        model=model.name, device="cpu", image_size=model.image_size)))
    before = voxels_of(phantom.volume_node)

    result = logic.segment(phantom.volume_node, segmentation, text="tumour", positive_points=phantom.clicks_node,
                           view="axial")

    segment_id = result.segment_ids[0]
    assert dice(segment_mask(segmentation, segment_id, phantom.volume_node), phantom.expected) >= 0.999
    assert segmentation.GetSegmentation().GetSegment(segment_id).GetName() == "Tumor"
    np.testing.assert_array_equal(voxels_of(phantom.volume_node), before)
    logic.undo(phantom.volume_node, segmentation, segment_id)
    assert not segment_mask(segmentation, segment_id, phantom.volume_node).any()


def test_the_self_test_that_reload_and_test_runs_passes_here_and_fails_on_a_model_that_misses():
    """MedicalSAM3SlicerLib.self_test_model.run_self_test: what Reload and Test runs in an installed extension."""
    import pytest

    from medsam3.model.bright_region_model import BrightRegionModel
    from MedicalSAM3SlicerLib.self_test_model import run_self_test

    assert run_self_test(new_scene()) >= 0.95

    class MissingModel(BrightRegionModel):  # a network that finds nothing under the click
        name = "misses"

        def _mask_from_prompt(self, image, prompt):
            return np.zeros_like(super()._mask_from_prompt(image, prompt))

    with pytest.raises(AssertionError, match="Dice"):
        run_self_test(new_scene(), model=MissingModel(image_size=256, mask_grid=64))
