"""Which prompts a checkpoint serves: declared in the catalogue, checked against the weights it holds, and a
click or propagation asked of a detector-only (2D) checkpoint refused in one line naming the model to choose,
before any slice is encoded, in the engine, the command line, the server and the Slicer module alike."""

import httpx
import numpy as np
import pytest
import torch

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.model.capabilities import (ALL_KINDS, BOX_EXEMPLARS, PROPAGATION, TEXT_ON_SLICE, TEXT_THROUGH_VOLUME,
                                  TRACKER_PROMPTS, CapabilityError)
from medsam3.apps.cli import main
from medsam3.interaction.engine import SegmentationEngine
from medsam3.errors import CheckpointError, MedSam3Error
from medsam3.model.sam3.meta_checkpoint import convert_meta_checkpoint, export_meta_state_dict
from medsam3.transports.model_loading import verify_model
from medsam3.model.model_sources import DEFAULT_MODEL_SOURCE, catalogue_entry, resolve_model
from medsam3.model.sam3.processors import write_processor_files
from medsam3.interaction.prompts import PointPrompt, SlicePrompt
from medsam3 import __version__
from medsam3.transports.remote_client import CLIENT_VERSION_HEADER, RemoteBackend
from medsam3.model.sam3.tiny_models import TINY_IMAGE_SIZE, build_tiny_configs, build_tiny_tokenizer
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel
from transformers import Sam3Model

from cases import load_case
from server_harness import API_KEY, running_server, write_nifti


@pytest.fixture(scope="module")
def detector_only_folder(tiny_dirs, tmp_path_factory):
    """A tiny image-model checkpoint in Meta's layout (as checkpoint_2D.pt is: no tracker), converted."""
    root = tmp_path_factory.mktemp("two_d")
    checkpoint = root / "checkpoint_2D_tiny.pt"
    torch.save({"model": export_meta_state_dict(Sam3Model.from_pretrained(tiny_dirs["sam3"]))}, checkpoint)
    converted = root / "converted"
    convert_meta_checkpoint(checkpoint, converted, config=build_tiny_configs()["sam3"])
    write_processor_files(converted, TINY_IMAGE_SIZE, build_tiny_tokenizer())
    return converted


@pytest.fixture(scope="module")
def spleen_volume():
    return load_case("spleen").volume


def _click(volume):
    i, j, k = (n // 2 for n in volume.shape_ijk)
    return SlicePrompt("axial", points=(PointPrompt((i, j, k)),))


def test_default_for_ct_and_mri_is_the_3d_checkpoint_at_504_px_serving_every_prompt():
    entry = catalogue_entry(DEFAULT_MODEL_SOURCE)
    assert entry.name == "medical-sam3-3d" and entry.image_size == 504
    assert entry.capabilities == set(ALL_KINDS) and entry.volume_text_protocol == "medical-sam3-clips"
    assert catalogue_entry("medical-sam3-2d").capabilities == {TEXT_ON_SLICE, BOX_EXEMPLARS}


def test_capabilities_are_read_from_the_weights(detector_only_folder, tiny_dirs):
    assert TransformersSegmentationModel(detector_only_folder, "two-d", bf16_autocast=False).capabilities == {TEXT_ON_SLICE,
                                                                                          BOX_EXEMPLARS}
    assert TransformersSegmentationModel(tiny_dirs["sam3"].parent, "tiny", bf16_autocast=False).capabilities == set(ALL_KINDS)


def test_clicks_and_propagation_on_a_detector_only_checkpoint_are_refused_before_any_encoding(
        detector_only_folder, spleen_volume, one_torch_thread):
    model = TransformersSegmentationModel(detector_only_folder, "medical-sam3-2d", bf16_autocast=False)
    engine = SegmentationEngine(model)
    for ask, kind in [(lambda: engine.predict_slice(spleen_volume, _click(spleen_volume)), TRACKER_PROMPTS),
                      (lambda: engine.propagate(spleen_volume, [_click(spleen_volume)]), PROPAGATION),
                      (lambda: engine.propagate_text(spleen_volume, "spleen"), TEXT_THROUGH_VOLUME)]:
        with pytest.raises(CapabilityError) as refused:
            ask()
        message = str(refused.value)
        assert "\n" not in message and kind in message and "medical-sam3-3d" in message
    assert engine.cache.misses == 0 and set(model._loaded) == set()  # nothing encoded, no class even loaded
    assert engine.precompute(spleen_volume, "axial", [5, 6]) == 0  # background encoding for clicks: none
    # what the checkpoint does serve still works
    [text] = engine.segment_text_on_slice(spleen_volume, "spleen", "axial", 10, score_threshold=0.0)
    assert text.visited_slices == [10]


def test_server_answers_a_click_on_a_detector_only_model_with_a_4xx_and_one_line(detector_only_folder,
                                                                                 spleen_volume, one_torch_thread):
    model = TransformersSegmentationModel(detector_only_folder, "medical-sam3-2d", bf16_autocast=False)
    backend = LocalBackend(SegmentationEngine(model), BackendInfo("medical-sam3-2d", "cpu", TINY_IMAGE_SIZE))
    with running_server(backend) as url:
        session = RemoteBackend(url, API_KEY).open_session(spleen_volume)
        with pytest.raises(CapabilityError, match="medical-sam3-3d"):
            session.add_prompt(1, _click(spleen_volume))
        answer = httpx.post(f"{url}/sessions/{session.session_id}/prompts",
                            headers={"Authorization": f"Bearer {API_KEY}", CLIENT_VERSION_HEADER: __version__},
                            json={"object_id": 1, "whole_volume": True, "prompt": {
                                "axis": "axial", "points": [{"ijk": [40.0, 40.0, 10.0], "positive": True}]}})
        assert 400 <= answer.status_code < 500
        assert answer.json()["error"]["kind"] == "CapabilityError"
        assert "medical-sam3-3d" in answer.json()["error"]["message"]


def test_command_line_refuses_a_click_on_a_detector_only_model_in_one_line(detector_only_folder, spleen_volume,
                                                                           tmp_path, capsys):
    image = write_nifti(spleen_volume, tmp_path / "ct.nii.gz")

    def factory(model=None, device=None, server_url=None, api_key=None):
        loaded = TransformersSegmentationModel(detector_only_folder, "medical-sam3-2d", bf16_autocast=False)
        return LocalBackend(SegmentationEngine(loaded), BackendInfo("medical-sam3-2d", "cpu", TINY_IMAGE_SIZE))

    code = main(["segment", str(image), "--point", "40,40,10", "--ijk", "-o", str(tmp_path / "out.nii.gz")],
                backend_factory=factory)
    error = capsys.readouterr().err.strip()
    assert code != 0 and error.count("\n") == 0 and "medical-sam3-3d" in error
    assert not (tmp_path / "out.nii.gz").exists()


def test_verify_prints_what_the_weights_serve_and_names_the_unsupported_adapter(detector_only_folder, capsys):
    report = verify_model(str(detector_only_folder), device="cpu")
    assert f"serves: {TEXT_ON_SLICE}, {BOX_EXEMPLARS};" in report
    assert "checkpoint_3D_LoRA2D.pt" in report and "not supported" in report
    assert "typed names: mapped to the 82 class names Medical SAM3 was trained on" in report
    with pytest.raises(CheckpointError, match="LoRA adapter"):
        resolve_model("ChongCong/Medical-SAM3:checkpoint_3D_LoRA2D.pt")


def test_command_line_refuses_before_loading_when_the_catalogue_model_cannot_serve_the_request(spleen_volume,
                                                                                                 tmp_path, capsys):
    image = write_nifti(spleen_volume, tmp_path / "ct.nii.gz")
    loaded = []
    code = main(["segment", str(image), "--model", "medical-sam3-2d", "--point", "40,40,10", "--ijk", "-o",
                 str(tmp_path / "out.nii.gz")], backend_factory=lambda *args: loaded.append(args))
    error = capsys.readouterr().err.strip()
    assert code != 0 and not loaded and error.count("\n") == 0 and "medical-sam3-3d" in error


def test_slicer_module_refuses_a_click_on_a_detector_only_model_in_one_line_and_keeps_the_segments(
        detector_only_folder, spleen_volume, tmp_path, one_torch_thread):
    from slicer_scene import add_points, add_slice_node, load_volume_node, new_scene, world_of_voxel

    from MedicalSAM3SlicerLib.logic import MedicalSAM3SlicerLogic

    scene = new_scene()
    node = load_volume_node(scene, spleen_volume, tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    model = TransformersSegmentationModel(detector_only_folder, "medical-sam3-2d", bf16_autocast=False)
    engine = SegmentationEngine(model)
    logic = MedicalSAM3SlicerLogic(LocalBackend(engine, BackendInfo("medical-sam3-2d", "cpu", TINY_IMAGE_SIZE)))
    centre = [n // 2 for n in spleen_volume.shape_ijk]
    clicks = add_points(scene, world_of_voxel(node, centre))
    for ask in (lambda: logic.segment(node, segmentation, positive_points=clicks, view="axial"),
                lambda: logic.segment(node, segmentation, text="spleen")):  # text through the volume
        with pytest.raises(CapabilityError) as refused:
            ask()
        assert "\n" not in str(refused.value) and "medical-sam3-3d" in str(refused.value)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0 and engine.cache.misses == 0
    # text on the slice in view is what this checkpoint serves
    view = add_slice_node(scene, "axial", world_of_voxel(node, centre))
    logic.segment(node, segmentation, text="spleen", view=view, whole_volume=False)
    assert engine.cache.misses > 0  # it ran: the slice was encoded
