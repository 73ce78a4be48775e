"""The module's self-test, run inside a real Slicer: by ctest (registered in this folder's CMakeLists.txt with
``slicer_add_python_unittest``, which runs ``slicer.testing.runUnitTest`` on this file) and by the module's
Reload and Test button in developer mode (``MedicalSAM3SlicerTest`` in ../../MedicalSAM3Slicer.py).

The layout follows Slicer's scripted-module template: Utilities/Templates/Modules/Scripted/CMakeLists.txt
(``if(BUILD_TESTING)`` ... ``add_subdirectory(Testing)``), Testing/CMakeLists.txt and Testing/Python/CMakeLists.txt;
the macro is CMake/SlicerMacroPythonTesting.cmake (Slicer 583e9b37). The same scenario runs without the application,
under slicer-core, in tests/bridge/test_slicer_self_test.py and tests/bridge/test_self_test_without_torch.py.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest


class MedicalSAM3SlicerSelfTest(ScriptedLoadableModuleTest):
    """Inside a real Slicer: a click on an oblique, transformed phantom, through the module logic, lands on the
    object; the segment is named from the typed text; undo restores it; the source volume is untouched."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_click_segments_the_object_under_it()

    def test_click_segments_the_object_under_it(self):
        import numpy as np

        from medsam3.transports.backend import BackendInfo, LocalBackend
        from medsam3.interaction.engine import SegmentationEngine
        from MedicalSAM3SlicerLib.segment_io import segment_mask
        from MedicalSAM3SlicerLib.self_test_model import make_phantom, self_test_model

        from MedicalSAM3SlicerLib.logic import MedicalSAM3SlicerLogic

        self.delayDisplay("Segmenting a phantom from one click, whole volume")
        phantom = make_phantom(slicer.mrmlScene)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        model = self_test_model()
        logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(model), BackendInfo(
            model=model.name, device="cpu", image_size=model.image_size)))
        source_before = slicer.util.arrayFromVolume(phantom.volume_node).copy()

        result = logic.segment(phantom.volume_node, segmentation, text="tumour", positive_points=phantom.clicks_node,
                               view="axial")

        segment_id = result.segment_ids[0]
        mask = segment_mask(segmentation, segment_id, phantom.volume_node)
        dice = 2 * (mask & phantom.expected).sum() / (mask.sum() + phantom.expected.sum())
        self.assertGreaterEqual(dice, 0.95)
        self.assertEqual(segmentation.GetSegmentation().GetSegment(segment_id).GetName(), "Tumor")
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(phantom.volume_node), source_before)
        logic.undo(phantom.volume_node, segmentation, segment_id)
        self.assertFalse(segment_mask(segmentation, segment_id, phantom.volume_node).any())
        self.delayDisplay("Test passed")
