"""The transformers adapter lists every run-time patch, each listed patch is applied on the path that needs it,
and a transformers release outside the tested range is named in one line."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import numpy as np
import pytest

from medsam3.apps.bench.precision_agreement import _answers
from medsam3.geometry.volume import Volume
from medsam3.interaction.engine import SegmentationEngine
from medsam3.model.sam3 import transformers_patches
from medsam3.model.sam3.precision import int8_engine
from medsam3.model.segmentation_model import ModelPrompt
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel
from medsam3.model.sam3.transformers_patches import APPLIED, PATCHES, TESTED_TRANSFORMERS, check_transformers_version

from cases import load_case

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_patch_the_module_applies_is_listed_with_a_reason_and_a_test():
    source = ast.parse(Path(transformers_patches.__file__).read_text())
    marked = {node.args[0].value for node in ast.walk(source) if isinstance(node, ast.Call)
              and getattr(node.func, "id", None) == "_mark" and isinstance(node.args[0], ast.Constant)}
    marked |= {node.args[2].value for node in ast.walk(source) if isinstance(node, ast.Call)  # wrapped once, named
               and getattr(node.func, "id", None) == "_wrap_forward_once" and isinstance(node.args[2], ast.Constant)}
    marked |= {"video_model_settings", "stability_fallback"}  # attributes_set marks the name it is given
    assert marked == {patch.name for patch in PATCHES}
    for patch in PATCHES:
        assert patch.reason and patch.target
        assert (ROOT / patch.proven_by.split(",")[0]).is_file(), patch


def test_a_release_outside_the_tested_range_is_named_in_one_line(caplog):
    import transformers

    assert check_transformers_version() == ""  # the installed release is the tested one
    assert check_transformers_version(transformers.__version__) == ""
    with caplog.at_level(logging.WARNING, logger="medsam3"):
        line = check_transformers_version("5.31.0")
        assert check_transformers_version("5.31.0") == line  # said once
    assert "\n" not in line and "transformers 5.31.0" in line and TESTED_TRANSFORMERS in line
    assert [record.getMessage() for record in caplog.records] == [line]


@pytest.mark.slow
def test_each_listed_patch_is_applied_where_it_is_needed(one_folder_model):
    """Clicks, text, propagation and text through the volume on a one-folder model in float32, bfloat16 and int8,
    and the precision-agreement measurement, apply every listed patch."""
    folder = one_folder_model
    case = load_case("spleen")
    shift = np.eye(4)
    shift[2, 3] = 10  # six slices of the spleen CT, from k = 10
    volume = Volume(case.volume.array[10:16], case.volume.ijk_to_ras @ shift)
    mask = case.mask[10:16]
    prompt = ModelPrompt(np.array([[100.0, 120.0]]), np.array([1]))
    before = APPLIED.copy()
    precisions = ("float32", "bfloat16") + (("int8",) if int8_engine() else ())
    for precision in precisions:
        model = TransformersSegmentationModel(folder, "one-folder", precision=precision)
        frames = SegmentationEngine(model).frames(volume, "axial")
        assert model.segment_with_prompt(model.encoding(frames, 2, "prompts"), prompt).logits.size
        model.segment_with_text(model.encoding(frames, 2, "text"), "liver")
        assert list(model.track(frames, {2: prompt}, 2, False))
        list(model.track_text(frames, "liver", 2, False))
    _answers(model, {"spleen": (volume, mask)}, (True, False))
    applied = {name for name in APPLIED if APPLIED[name] > before[name]}
    expected = {patch.name for patch in PATCHES} - (set() if int8_engine() else {"int8_linear_layers"})
    once_per_process = {"rotary_complex_product"}  # a module-level swap, made when the first model loads
    assert all(APPLIED[name] for name in once_per_process)
    assert expected - once_per_process - applied == set()
