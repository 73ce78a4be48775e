"""The int8 path (CPU only, asked for with precision "int8"): the linear layers of the ViT and the text encoder in
int8, the same masks as float32 on real CT and MRI slices, and the classes of one folder share the int8 layers.
Where torch has no x86 int8 kernels, or on a GPU, the engine says so and keeps what works."""

import pytest
import torch

from medsam3 import precision
from medsam3.precision import choose_precision, int8_engine
from medsam3.precision_agreement import load_agreement_volumes, measure_agreement, mid_size_tracker, summarise
from medsam3.transformers_model import TransformersSegmentationModel

from test_shared_backbone import one_folder_model  # noqa: F401  (the fixture: one folder for all four classes)

pytestmark = pytest.mark.skipif(int8_engine() is None, reason="this torch build has no x86 / fbgemm int8 kernels")

Int8Linear = torch.ao.nn.quantized.dynamic.Linear

# int8 weights (one scale per output channel) and activations (one scale per call) round each product of the
# linear layers to about 2 significant digits; measured on the mid-size tracker: largest logit difference 1.3 % of
# the largest logit, Dice >= 0.996. Masks differ only at pixels whose float32 logit is that close to 0.
RELATIVE_LOGIT_TOLERANCE = 0.03
MIN_DICE = 0.99


def test_int8_masks_agree_with_float32_on_real_ct_and_mri_slices(one_torch_thread):
    """Mid-size random-weight Sam3TrackerModel (full-size prompt encoder, mask decoder and neck width, 4-layer
    256-wide ViT at 336 px), 8 fixed prompts. Random weights: numerical drift, not mask quality."""
    tracker, processor = mid_size_tracker()
    results = measure_agreement(tracker, processor, 336, load_agreement_volumes(), fast_precision="int8",
                                stability_fallback=False)
    summary = summarise(results)
    print("int8 vs float32 (mid-size random weights):", {k: v for k, v in summary.items() if k != "per_prompt"})
    vit_linears = [m for m in tracker.vision_encoder.backbone.modules() if isinstance(m, (torch.nn.Linear, Int8Linear))]
    assert vit_linears and all(isinstance(m, Int8Linear) for m in vit_linears)  # the int8 path really ran
    assert all(type(m) is torch.nn.Linear for m in tracker.mask_decoder.modules() if isinstance(m, torch.nn.Linear))
    assert {r.slice_name for r in results} == {"CT spleen", "MRI brain tumour"} and len(results) == 8
    assert all(r.reference_pixels > 0 for r in results)
    assert summary["max_relative_logit_difference"] <= RELATIVE_LOGIT_TOLERANCE
    assert summary["dice_min"] >= MIN_DICE


def test_int8_layers_are_held_once_across_the_classes_of_one_folder(one_folder_model, one_torch_thread):
    model = TransformersSegmentationModel(one_folder_model, "one-folder-int8", precision="int8")
    assert model.precision.startswith("int8 path")
    tracker = model.component("sam3_tracker")[0].vision_encoder.backbone
    detector = model.component("sam3")[0]
    pairs = [(a.mlp.fc1, b.mlp.fc1) for a, b in zip(tracker.layers, detector.vision_encoder.backbone.layers)]
    assert pairs and all(isinstance(a, Int8Linear) and a is b for a, b in pairs)
    text_linears = [m for m in detector.text_encoder.modules() if isinstance(m, (torch.nn.Linear, Int8Linear))]
    assert text_linears and all(isinstance(m, Int8Linear) for m in text_linears)


def test_int8_falls_back_to_float32_where_it_cannot_run(monkeypatch):
    assert choose_precision("cpu", "int8").name == "int8"
    with pytest.raises(ValueError, match="int8 is a CPU path"):
        choose_precision("cuda", "int8")
    assert choose_precision("cuda", "auto").name == "bfloat16"  # the GPU path is unchanged
    monkeypatch.setattr(precision, "int8_engine", lambda: None)  # e.g. an ARM build of torch
    plan = choose_precision("cpu", "int8")
    assert plan.name == "float32" and "no x86 / fbgemm int8 kernels" in plan.describe()


def test_the_environment_variable_chooses_int8_on_cpus_only(monkeypatch):
    monkeypatch.setenv("MEDSAM3_PRECISION", "int8")
    plan = choose_precision("cpu", "auto")
    assert plan.name == "int8" and "MEDSAM3_PRECISION" in plan.describe()
    assert choose_precision("cpu", "float32").name == "float32"  # an explicit choice wins over the variable
    assert choose_precision("cuda", "auto").name == "bfloat16"  # a GPU keeps its own path
    monkeypatch.setenv("MEDSAM3_PRECISION", "int4")
    with pytest.raises(ValueError, match="MEDSAM3_PRECISION='int4' is not a precision"):
        choose_precision("cpu", "auto")
