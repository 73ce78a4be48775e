"""The int8 path, kept for measurement (``medsam3 bench --precision int8``), never chosen by "auto": the linear
layers of the ViT and the text encoder in int8, held once across the classes of one folder. Where torch has no
x86 int8 kernels it falls back to float32 and says so; a GPU refuses it and keeps its own path. (Its masks drift
past the agreement tolerance on the full-size tracker: docs/benchmark.md.)"""

import pytest
import torch

from medsam3.model.sam3 import precision
from medsam3.model.sam3.precision import choose_precision, int8_engine
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel


pytestmark = pytest.mark.skipif(int8_engine() is None, reason="this torch build has no x86 / fbgemm int8 kernels")

Int8Linear = torch.ao.nn.quantized.dynamic.Linear


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
    assert choose_precision("cpu", "auto").name != "int8"  # measurement only, never chosen on its own
    with pytest.raises(ValueError, match="int8 is a CPU path"):
        choose_precision("cuda", "int8")
    assert choose_precision("cuda", "auto").name == "bfloat16"  # the GPU path is unchanged
    monkeypatch.setattr(precision, "int8_engine", lambda: None)  # e.g. an ARM build of torch
    plan = choose_precision("cpu", "int8")
    assert plan.name == "float32" and "no x86 / fbgemm int8 kernels" in plan.describe()
