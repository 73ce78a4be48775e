"""Running inside Slicer: parameters saved with the scene, the model worker thread, loading before torch."""

from __future__ import annotations

import re
import threading
import time

from slicer_scene import new_scene

from MedicalSAM3SlicerLib.parameters import MedicalSAM3SlicerParameters
from MedicalSAM3SlicerLib.worker import ModelWorker


def test_parameters_survive_saving_and_reloading_the_scene():
    scene = new_scene()
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "organs")
    parameters = MedicalSAM3SlicerParameters.from_scene(scene)
    assert parameters.auto_run and parameters.whole_volume and parameters.device == "auto"  # defaults
    parameters.source_volume, parameters.segmentation = volume, segmentation
    parameters.text, parameters.whole_volume, parameters.server_url = "liver, spleen", False, "https://gpu:8000"

    scene.SetSaveToXMLString(1)
    scene.Commit()
    xml = scene.GetSceneXMLString()
    reloaded = new_scene()
    reloaded.SetLoadFromXMLString(1)
    reloaded.SetSceneXMLString(xml)
    reloaded.Import()

    again = MedicalSAM3SlicerParameters.from_scene(reloaded)
    assert again.node is not None and reloaded.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1
    assert (again.text, again.whole_volume, again.auto_run, again.server_url) == \
        ("liver, spleen", False, True, "https://gpu:8000")
    assert again.source_volume.GetName() == "CT" and again.segmentation.GetName() == "organs"
    assert "ApiKey" not in xml  # secrets never go into a scene file


def test_worker_runs_jobs_in_order_on_one_thread_and_delivers_on_the_caller_thread():
    worker = ModelWorker()
    job_threads, delivered = [], []
    for n in range(5):
        worker.submit(lambda n=n: (job_threads.append(threading.get_ident()), time.sleep(0.01), n)[2],
                      on_done=lambda value: delivered.append((value, threading.get_ident())))
    failed = []
    worker.submit(lambda: 1 / 0, on_error=failed.append)
    deadline = time.time() + 5
    while worker.busy and time.time() < deadline:
        worker.deliver_finished()
        time.sleep(0.005)
    worker.shutdown()
    assert [value for value, _ in delivered] == [0, 1, 2, 3, 4]
    assert len(set(job_threads)) == 1 and job_threads[0] != threading.get_ident()  # one worker, not the caller
    assert {thread for _, thread in delivered} == {threading.get_ident()}  # callbacks on the caller's thread
    assert isinstance(failed[0], ZeroDivisionError)


# What 'Install dependencies' installs: tests/bridge/test_dependencies.py.


def test_the_library_never_imports_qt():
    import sys

    import MedicalSAM3SlicerLib.dependencies  # noqa: F401
    import MedicalSAM3SlicerLib.exports  # noqa: F401
    import MedicalSAM3SlicerLib.logic  # noqa: F401
    import MedicalSAM3SlicerLib.parameters  # noqa: F401
    import MedicalSAM3SlicerLib.worker  # noqa: F401

    assert not [name for name in sys.modules if name in ("qt", "ctk", "PythonQt") or name.startswith("PyQt")]


def test_the_module_loads_before_torch_is_installed():
    """What MedicalSAM3Slicer.py imports at load time works without torch, so 'Install dependencies' is reachable."""
    import subprocess
    import sys
    from pathlib import Path

    module_dir = Path(__file__).resolve().parents[2] / "MedicalSAM3Slicer"
    code = ("import sys; sys.modules['torch'] = None; sys.modules['scipy'] = None; sys.path.insert(0, %r)\n"
            "from MedicalSAM3SlicerLib import dependencies, exports, keyboard_shortcuts, parameters, prompt_nodes, "
            "segment_io, "
            "slice_view_interaction, supported_versions, worker\n"
            "print(dependencies.plan_installation().describe())\n") % str(module_dir)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    widget_files = [module_dir / "MedicalSAM3Slicer.py", *(module_dir / "MedicalSAM3SlicerWidgets").glob("*.py")]
    imported = {module for path in widget_files
                for module in re.findall(r"^from MedicalSAM3SlicerLib(\.\w+)? import", path.read_text(), re.M)}
    assert imported == {"", ".keyboard_shortcuts", ".parameters", ".prompt_nodes", ".segment_io", ".slice_view_interaction",
                        ".supported_versions", ".worker"}, imported
