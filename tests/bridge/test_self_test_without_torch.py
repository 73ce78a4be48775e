"""The module's self-test runs in a Slicer that has no torch yet (before 'Install dependencies').

The self-test (Testing/Python/MedicalSAM3SlicerSelfTest.py, registered with ctest) segments a phantom with the bright-region model,
which needs no torch; the slice-to-model resize is the only engine step that used torch. It now falls back to a
numpy resize with torch's weights.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from medsam3.geometry.model_frame import resize_bilinear

from not_installed import not_installed

ROOT = Path(__file__).resolve().parents[2]

# The same scenario as the self-test (MedicalSAM3Slicer/Testing/Python/MedicalSAM3SlicerSelfTest.py), in a Python
# where importing torch fails.
SELF_TEST_WITHOUT_TORCH = not_installed('set(sys.argv[1].split(","))') + textwrap.dedent("""
    sys.path.insert(0, "tests/support")
    from slicer_scene import new_scene
    from medsam3.transports.backend import BackendInfo, LocalBackend
    from medsam3.interaction.engine import SegmentationEngine
    from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
    from MedicalSAM3SlicerLib.segment_io import segment_mask
    from MedicalSAM3SlicerLib.self_test_model import make_phantom, self_test_model

    scene = new_scene()
    phantom = make_phantom(scene)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    model = self_test_model()
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(model), BackendInfo(
        model=model.name, device="cpu", image_size=model.image_size)))
    result = logic.segment(phantom.volume_node, segmentation, text="tumour", positive_points=phantom.clicks_node,
                           view="axial")
    mask = segment_mask(segmentation, result.segment_ids[0], phantom.volume_node)
    dice = 2 * (mask & phantom.expected).sum() / (mask.sum() + phantom.expected.sum())
    assert segmentation.GetSegmentation().GetSegment(result.segment_ids[0]).GetName() == "Tumor"
    logic.undo(phantom.volume_node, segmentation, result.segment_ids[0])
    assert not segment_mask(segmentation, result.segment_ids[0], phantom.volume_node).any()
    assert not MISSING & set(sys.modules)
    print(f"dice={dice:.4f}")
""")


def not_yet_installed() -> list[str]:
    """Import names of every package a fresh Slicer lacks before 'Install dependencies': the requirements that
    Slicer does not ship (torch, transformers, huggingface_hub, tqdm, httpx, ...), and highdicom."""
    from MedicalSAM3SlicerLib import dependencies

    names = {dependencies.canonicalize_name(r.name).replace("-", "_") for r in dependencies.read_requirements()
             if not dependencies.is_slicer_package(r.name)}
    assert {"torch", "torchvision", "transformers", "huggingface_hub"} <= names
    return sorted(names | {"highdicom"})


def test_the_self_test_segments_the_phantom_in_a_python_without_torch():
    missing = ",".join(not_yet_installed())
    run = subprocess.run([sys.executable, "-c", SELF_TEST_WITHOUT_TORCH, missing], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT / "MedicalSAM3Slicer"), "PATH": "/usr/bin:/bin",
                              "PYTHONDONTWRITEBYTECODE": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    dice = float(run.stdout.strip().rsplit("dice=", 1)[1])
    assert dice >= 0.999


@pytest.mark.parametrize("shape_in,shape_out", [((512, 512), (1008, 1008)), ((512, 512), (224, 224)),
                                                ((60, 50), (256, 213)), ((300, 512), (100, 170)),
                                                ((512, 100), (1008, 197))])
def test_the_numpy_resize_gives_the_model_the_image_torch_gives_it(shape_in, shape_out):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(3)
    image = rng.normal(size=shape_in).astype(np.float32) * 100
    for antialias in (False, True):
        expected = F.interpolate(torch.from_numpy(image)[None, None], size=shape_out, mode="bilinear",
                                 align_corners=False, antialias=antialias)[0, 0].numpy()
        np.testing.assert_allclose(resize_bilinear(image, shape_out, antialias), expected,
                                   atol=1e-4 * np.ptp(image))
