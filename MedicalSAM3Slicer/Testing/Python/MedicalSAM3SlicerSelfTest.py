"""The module's self-test, run inside a real Slicer: by ctest (registered in this folder's CMakeLists.txt with
``slicer_add_python_unittest``, which runs ``slicer.testing.runUnitTest`` on this file) and by the module's
Reload and Test button in developer mode (``MedicalSAM3SlicerTest`` in ../../MedicalSAM3Slicer.py), both through
``MedicalSAM3SlicerLib.self_test_model.run_self_test``.

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
        # the scenario lives in the installed library, where Reload and Test finds it too
        from MedicalSAM3SlicerLib.self_test_model import run_self_test

        run_self_test(slicer.mrmlScene, say=self.delayDisplay)
