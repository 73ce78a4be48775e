"""The rule "clicks refine one typed target" is stated once (interaction.prompts.refined_target): `medsam3 segment`,
`medsam3 batch` and the Slicer module refuse clicks with several typed names in the same one line, before any
model runs and without writing anything."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from slicer_scene import add_points, load_volume_node, new_scene

from medsam3.apps.cli import main
from medsam3.errors import PromptError
from medsam3.interaction.engine import SegmentationEngine
from medsam3.interaction.prompts import refined_target
from medsam3.transports.backend import BackendInfo, LocalBackend

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.self_test_model import self_test_model

from server_harness import small_volume, write_nifti

TWO_NAMES = "liver, spleen"


def the_rule() -> str:
    with pytest.raises(PromptError) as refused:
        refined_target(TWO_NAMES)
    return str(refused.value)


def test_the_rule_allows_one_name_with_its_side_and_refuses_two():
    assert refined_target("kidney, left") == "kidney, left" and refined_target("") == ""
    assert "one typed target" in the_rule() and "'liver', 'spleen'" in the_rule()


def run(*arguments) -> tuple[int, str]:
    def no_model(*_arguments):
        raise AssertionError("no model may load for a refused request")

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in arguments], backend_factory=no_model)
    return code, err.getvalue().strip()


def test_segment_and_batch_refuse_in_the_rules_words(tmp_path):
    image = write_nifti(small_volume(), tmp_path / "ct.nii.gz")
    code, error = run("segment", image, "--text", TWO_NAMES, "--point", "8,8,1", "--ijk", "-o", tmp_path / "out")
    assert code != 0 and error.endswith(the_rule()) and len(error.splitlines()) == 1
    prompts = tmp_path / "clicks.csv"
    prompts.write_text("case,kind,x,y,z,space\nct,point,8,8,1,ijk\n")
    code, error = run("batch", image, "--text", TWO_NAMES, "--prompts", prompts, "--output", tmp_path / "batch")
    assert code != 0 and the_rule() in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clicks.csv", "ct.nii.gz"]


def test_the_slicer_module_refuses_in_the_rules_words(tmp_path):
    scene = new_scene()
    volume = small_volume()
    node = load_volume_node(scene, volume, tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    clicks = add_points(scene, volume.ijk_to_ras_points(np.array([[8.0, 8.0, 1.0]])))
    model = self_test_model()
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(model), BackendInfo(
        model=model.name, device="cpu", image_size=model.image_size)))
    with pytest.raises(PromptError) as refused:
        logic.prepare(node, segmentation, text=TWO_NAMES, positive_points=clicks)
    assert str(refused.value) == the_rule()
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0


def test_request_kinds_are_a_type_and_an_unknown_one_is_refused_in_one_line():
    from MedicalSAM3SlicerLib.logic import RequestKind

    logic = MedicalSAM3SlicerLogic(None)
    with pytest.raises(ValueError, match="Unknown action 'undoo': use one of prompt, text, seed, reset, undo, redo"):
        logic.prepare_action("undoo", None, None, None)
    with pytest.raises(ValueError, match="'prompt' is not an action on one segment"):
        logic.prepare_action(RequestKind.PROMPT, None, None, None)
    assert RequestKind("undo") is RequestKind.UNDO and RequestKind.UNDO == "undo"
