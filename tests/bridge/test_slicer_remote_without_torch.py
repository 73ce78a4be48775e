"""Remote-server mode in a Slicer whose Python has only what Slicer ships plus httpx (issue 17, item 5): the bridge
talks to a real server on loopback and writes the mask at the right voxels, and nothing imports torch,
transformers or any other package the local model needs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from slicer_scene import add_points, load_volume_node, new_scene, world_of_voxel

from MedicalSAM3SlicerLib import dependencies
from MedicalSAM3SlicerLib.segment_io import segment_mask

from cases import load_case
from oracle import ground_truth_volume
from server_harness import API_KEY, running_server, served_tiny_model
from placement import click_in_object, dice
from slicer_oracle import oracle_logic
from not_installed import not_installed

ROOT = Path(__file__).resolve().parents[2]

REMOTE_CLICK = not_installed('set(sys.argv[4].split(","))') + textwrap.dedent("""
    url, key, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    ijk = tuple(float(value) for value in sys.argv[5].split(","))
    sys.path.insert(0, "tests/support")
    import numpy as np
    from pathlib import Path
    from slicer_scene import add_points, load_volume_node, new_scene, world_of_voxel
    from cases import load_case
    from oracle import ground_truth_volume
    from medsam3.transports.backend_choice import open_backend
    from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
    from MedicalSAM3SlicerLib.segment_io import segment_mask

    case = load_case("spleen")
    scene = new_scene()
    node = load_volume_node(scene, ground_truth_volume(case.volume, case.mask), Path(folder), "remote")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    logic = MedicalSAM3SlicerLogic(open_backend(server_url=url, api_key=key))
    clicks = add_points(scene, world_of_voxel(node, ijk))
    segment = logic.segment(node, segmentation, positive_points=clicks, view="axial", whole_volume=False)
    np.save(Path(folder) / "mask.npy", segment_mask(segmentation, segment.segment_ids[0], node))
    assert not MISSING & {name.split(".")[0] for name in sys.modules}, MISSING & set(sys.modules)
    print("transport=" + logic.backend.info().transport)
""")


def local_model_packages() -> list[str]:
    """Import names of every requirement remote mode must do without: all but Slicer's own and httpx."""
    remote = {dependencies.canonicalize_name(r.name) for r in dependencies.read_requirements()
              if dependencies.is_slicer_package(r.name) or dependencies.canonicalize_name(r.name)
              in dependencies.REMOTE_PACKAGES}
    names = {dependencies.canonicalize_name(r.name).replace("-", "_") for r in dependencies.read_requirements()
             if dependencies.canonicalize_name(r.name) not in remote}
    assert {"torch", "torchvision", "transformers", "huggingface_hub", "safetensors", "tokenizers"} <= names
    return sorted(names | {"highdicom", "uvicorn", "fastapi", "starlette"})


def test_remote_mode_in_a_python_without_torch_writes_the_servers_mask_at_the_right_voxels(tmp_path):
    case = load_case("spleen")
    ijk, expected = click_in_object(case.mask, 2)
    with running_server() as url:
        run = subprocess.run([sys.executable, "-c", REMOTE_CLICK, url, API_KEY, str(tmp_path),
                              ",".join(local_model_packages()), ",".join(map(str, ijk))], cwd=ROOT,
                             capture_output=True, text=True, timeout=300,
                             env={"PYTHONPATH": str(ROOT / "MedicalSAM3Slicer"), "PATH": "/usr/bin:/bin",
                                  "PYTHONDONTWRITEBYTECODE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "transport=remote" in run.stdout
    remote = np.load(tmp_path / "mask.npy")
    assert dice(remote, expected) >= 0.95  # the clicked object, on the clicked slice
    # and exactly what the same click gives in-process
    scene = new_scene()
    node = load_volume_node(scene, ground_truth_volume(case.volume, case.mask), tmp_path, "local")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    result = oracle_logic().segment(node, segmentation, positive_points=add_points(scene, world_of_voxel(node, ijk)),
                                    view="axial", whole_volume=False)
    np.testing.assert_array_equal(remote, segment_mask(segmentation, result.segment_ids[0], node))


@pytest.mark.slow
def test_remote_mode_without_torch_against_medsam3_serve_gives_the_servers_model_answer(tmp_path, one_torch_thread):
    """The same, against the real command `medsam3 serve --model tiny-random` on loopback: the Python without torch
    gets exactly the voxels the same model gives in-process (tiny random weights: the answer means nothing, but it
    must be the same answer)."""
    import os

    from medsam3.transports.model_loading import load_backend
    from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic

    case = load_case("spleen")
    ijk, _ = click_in_object(case.mask, 2)
    cache = tmp_path / "cache"
    environment = {**os.environ, "MEDSAM3_API_KEY": API_KEY, "MEDSAM3_CACHE": str(cache),
                   "PYTHONPATH": str(ROOT / "MedicalSAM3Slicer"), "OMP_NUM_THREADS": "1"}
    with served_tiny_model(tmp_path, environment) as url:
        run = subprocess.run([sys.executable, "-c", REMOTE_CLICK, url, API_KEY, str(tmp_path),
                              ",".join(local_model_packages()), ",".join(map(str, ijk))], cwd=ROOT,
                             capture_output=True, text=True, timeout=300,
                             env={"PYTHONPATH": str(ROOT / "MedicalSAM3Slicer"), "PATH": "/usr/bin:/bin",
                                  "PYTHONDONTWRITEBYTECODE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    remote = np.load(tmp_path / "mask.npy")
    scene = new_scene()
    node = load_volume_node(scene, ground_truth_volume(case.volume, case.mask), tmp_path, "local")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    logic = MedicalSAM3SlicerLogic(load_backend("tiny-random", device="cpu", cache_dir=cache))
    result = logic.segment(node, segmentation, positive_points=add_points(scene, world_of_voxel(node, ijk)),
                           view="axial", whole_volume=False)
    np.testing.assert_array_equal(remote, segment_mask(segmentation, result.segment_ids[0], node))
    assert remote.any()  # the tiny model does answer on this click (about 14,000 voxels): the equality says something
