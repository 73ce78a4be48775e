"""The training engine on the tiny random Sam3Model and CT slices from ../shared/data: slices are the engine's own
model images, a stopped and resumed run computes the uninterrupted run's losses, a LoRA run merges into weights
that answer as the adapters did, and the saved folder keeps the trackers' weights."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from finetune_data import write_ct_cases
from medsam3.apps.evaluation.datasets import open_dataset
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel
from medsam3.interaction.engine import SegmentationEngine
from medsam3.model.sam3.tiny_models import TINY_IMAGE_SIZE
from medsam3.training.loop import Trainer, TrainingSettings, TrainingStopped
from medsam3.training.model_folder import write_model_folder
from medsam3.training.slices import LabelledVolume, build_slice_set, training_structures


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    dataset = open_dataset(write_ct_cases(tmp_path_factory.mktemp("finetune_data"), count=3))
    loaded = [source.load() for source in dataset.cases]
    structures = training_structures([(s.value, s.name) for s in dataset.structures])
    return [LabelledVolume(c.case_id, c.volume, c.labels) for c in loaded], structures


@pytest.fixture(scope="module")
def slices(cases):
    volumes, structures = cases
    return build_slice_set(volumes[:2], structures, TINY_IMAGE_SIZE)


def test_training_slices_are_the_engines_model_images_and_labels_cross_the_same_frame(cases, slices, tiny_dirs):
    volumes, structures = cases
    assert [s.prompt for s in structures] == ["Liver", "Spleen"]  # the training vocabulary's class names
    model = TransformersSegmentationModel(tiny_dirs["sam3"].parent, "tiny", image_size=TINY_IMAGE_SIZE)
    engine = SegmentationEngine(model)
    for index, structure in enumerate(structures):
        sample = slices.positives[index][len(slices.positives[index]) // 2]
        frames = engine.frames(volumes[sample.case].volume, "axial", target_text=structure.prompt)
        np.testing.assert_array_equal(slices.image(sample), frames.image(sample.slice_index))
        truth = frames.geometry.as_slice_stack(volumes[sample.case].labels)[sample.slice_index] == structure.value
        back = frames.frame.model_grid_to_slice(slices.target_mask(sample).astype(np.float32)) > 0.5
        assert 2 * (back & truth).sum() / (back.sum() + truth.sum()) > 0.9
        boxes, masks = slices.instances(sample)
        assert len(boxes) == len(masks) >= 1 and (boxes[:, 2:] > boxes[:, :2]).all()
    assert all(slices.negatives[i] for i in range(len(structures)))  # empty slices are there as negatives


def _trainer(tiny_dirs, slices, tmp_path, steps, parts="heads", learning_rate=1e-3):
    settings = TrainingSettings(steps=steps, parts=parts, learning_rate=learning_rate, checkpoint_every=2, seed=3)
    return Trainer(tiny_dirs["sam3"], slices, settings, "cpu", state_dir=tmp_path / "state")


def test_a_stopped_run_resumes_to_the_uninterrupted_losses(tiny_dirs, slices, tmp_path, one_torch_thread):
    uninterrupted = _trainer(tiny_dirs, slices, tmp_path / "a", steps=6)
    uninterrupted.run()

    stopped = _trainer(tiny_dirs, slices, tmp_path / "b", steps=6)
    with pytest.raises(TrainingStopped, match="--resume"):
        stopped.run(should_stop=lambda: stopped.step == 3)  # between checkpoints (every 2 steps)
    resumed = _trainer(tiny_dirs, slices, tmp_path / "b", steps=6)
    resumed.load_checkpoint()
    assert resumed.step == 3
    resumed.run()

    print("uninterrupted", uninterrupted.losses, "\nresumed      ", resumed.losses)
    assert resumed.losses == uninterrupted.losses  # exactly
    assert len(set(uninterrupted.losses)) == 6
    for name, value in uninterrupted.trainable.items():
        torch.testing.assert_close(resumed.trainable[name], value, rtol=0, atol=0)


def test_lora_merged_weights_answer_as_the_adapters_did(tiny_dirs, slices, tmp_path, one_torch_thread):
    trainer = _trainer(tiny_dirs, slices, tmp_path, steps=3, parts="lora", learning_rate=1e-2)
    adapted = [name for name in trainer.trainable if "lora_B" in name]
    assert len(adapted) == 24  # every linear layer of the tiny ViT (2 layers x 6) and text encoder (2 x 6)
    trainer.run()
    assert any(float(trainer.trainable[name].detach().abs().max()) > 0 for name in adapted)  # the adapters moved
    sample = slices.positives[0][0]
    with torch.no_grad():
        trainer.network.eval()
        unmerged = trainer.forward([sample])
        merged_model = trainer.trained_detector()
        merged = trainer.forward([sample], merged_model)
    assert not any("lora" in name for name, _ in merged_model.named_parameters())
    for field in ("logits", "boxes_xyxy", "presence", "masks"):
        difference = float((getattr(merged, field) - getattr(unmerged, field)).abs().max())
        scale = max(1.0, float(getattr(unmerged, field).abs().max()))  # float32 rounding grows with the value
        print(f"{field}: largest difference merged - unmerged {difference:.2e} (largest value {scale:.3g})")
        assert difference / scale <= 1e-5, field
        probabilities = (getattr(merged, field).sigmoid() - getattr(unmerged, field).sigmoid()).abs().max()
        assert float(probabilities) <= 1e-5, field


def test_the_saved_folder_keeps_every_tracker_weight_and_holds_the_trained_detector(tiny_dirs, slices, tmp_path,
                                                                                    one_torch_thread):
    trainer = _trainer(tiny_dirs, slices, tmp_path, steps=2, learning_rate=1e-2)
    trainer.run()
    trained = trainer.trained_detector().state_dict()
    base = tiny_dirs["sam3"].parent
    output = write_model_folder(base, tmp_path / "model", trained, {"README.md": "card"})

    for role in ("sam3_tracker", "sam3_tracker_video"):  # the trackers' folders: byte-identical files
        assert filecmp.cmp(base / role / "model.safetensors", output / role / "model.safetensors", shallow=False)
    before, after = (load_file(str(folder / "sam3_video" / "model.safetensors")) for folder in (base, output))
    tracker_keys = [key for key in before if not key.startswith("detector_model.")]
    assert tracker_keys and all(torch.equal(before[key], after[key]) for key in tracker_keys)
    detector_keys = [key for key in before if key.startswith("detector_model.")]
    assert all(torch.equal(after[key], trained[key.removeprefix("detector_model.")]) for key in detector_keys)
    base_detector = load_file(str(base / "sam3" / "model.safetensors"))
    saved = load_file(str(output / "sam3" / "model.safetensors"))
    assert all(torch.equal(saved[key], trained[key]) for key in saved)
    changed = {key.split(".")[0] for key in saved if not torch.equal(saved[key], base_detector[key])}
    assert changed == {"detr_decoder", "mask_decoder", "dot_product_scoring"}  # the default parts, nothing else
    assert (output / "README.md").read_text() == "card"


def test_a_one_folder_model_gets_its_detector_replaced_and_every_tracker_tensor_back(one_folder_model, slices,
                                                                                    tmp_path, one_torch_thread):
    """facebook/sam3 and converted Medical SAM3 checkpoints hold every class in one folder and one weights file."""
    settings = TrainingSettings(steps=2, learning_rate=1e-2, seed=1)
    trainer = Trainer(one_folder_model, slices, settings, "cpu")
    trainer.run()
    trained = trainer.trained_detector().state_dict()
    output = write_model_folder(one_folder_model, tmp_path / "model", trained, {"README.md": "card"})

    files = sorted(p.relative_to(one_folder_model) for p in one_folder_model.rglob("*.safetensors"))
    assert files == sorted(p.relative_to(output) for p in output.rglob("*.safetensors"))
    for name in files:
        before, after = load_file(str(one_folder_model / name)), load_file(str(output / name))
        assert before.keys() == after.keys()
        others = [key for key in before if not key.startswith("detector_model.")]
        assert others and all(torch.equal(before[key], after[key]) for key in others)
    loaded = TransformersSegmentationModel(output, "fine-tuned").component("sam3")[0].state_dict()
    heads = [key for key in trained if key.split(".")[0] == "mask_decoder"]
    assert all(torch.equal(loaded[key], trained[key]) for key in heads)


@pytest.mark.parametrize("layout", ["one folder per class", "one folder"])
def test_train_all_moves_the_vit_and_keeps_every_tracker_tensor(layout, tiny_dirs, one_folder_model, slices,
                                                                tmp_path, one_torch_thread):
    """--train all: every detector parameter learns (the ViT too); the trackers' own tensors are written back
    unchanged, and the folder loads with the trained detector in it."""
    base = tiny_dirs["sam3"].parent if layout == "one folder per class" else one_folder_model
    detector_folder = tiny_dirs["sam3"] if layout == "one folder per class" else one_folder_model
    trainer = Trainer(detector_folder, slices, TrainingSettings(steps=2, parts="all", learning_rate=1e-3, seed=2),
                      "cpu")
    before = {key: value.detach().clone() for key, value in trainer.model.state_dict().items()}
    trainer.run()
    trained = trainer.trained_detector().state_dict()
    output = write_model_folder(base, tmp_path / "model", trained, {"README.md": "card"})

    vit = [key for key in trained if key.startswith("vision_encoder.backbone.")]
    moved = [key for key in vit if not torch.equal(trained[key], before[key])]
    print(f"{layout}: {len(moved)} of {len(vit)} ViT tensors changed; parts changed: "
          f"{sorted({key.split('.')[0] for key in trained if not torch.equal(trained[key], before[key])})}")
    assert vit and moved == vit  # every ViT tensor learns
    assert any(not torch.equal(trained[k], before[k]) for k in trained if k.startswith("text_encoder."))

    files = sorted(p.relative_to(base) for p in base.rglob("*.safetensors"))
    assert files == sorted(p.relative_to(output) for p in output.rglob("*.safetensors"))
    for name in files:
        if name.parts[0] in ("sam3_tracker", "sam3_tracker_video"):  # the trackers' own folders: the same bytes
            assert filecmp.cmp(base / name, output / name, shallow=False), name
            continue
        original, saved = load_file(str(base / name)), load_file(str(output / name))
        assert original.keys() == saved.keys()
        prefix = "" if name.parts[0] == "sam3" else "detector_model."
        trackers = [key for key in original if not key.startswith(prefix)] if prefix else []
        assert all(torch.equal(original[key], saved[key]) for key in trackers), name
        assert all(torch.equal(saved[key], trained[key.removeprefix(prefix)]) for key in saved
                   if key.startswith(prefix)), name
    loaded = TransformersSegmentationModel(output, "fine-tuned", image_size=TINY_IMAGE_SIZE).component("sam3")[0]
    # the engine's precision plan may hold the ViT in bfloat16 on the CPU: compare in the dtype it holds
    differ = [key for key, value in loaded.state_dict().items()
              if not torch.equal(value, trained[key].to(value.dtype))]
    assert not differ, differ[:5]
