"""`medsam3 models convert` and `models verify` as a careless or hostile user meets them: the float16 the help
offers works, and a pickled weights file that asks to run code is refused in one line that does not suggest the
unsafe way round."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import medsam3.model.sam3.meta_checkpoint
import medsam3.model.sam3.processors
from medsam3.apps.cli import main
from medsam3.model.sam3.meta_checkpoint import TARGET_MODEL_CLASSES, export_meta_state_dict
from medsam3.model.sam3.tiny_models import build_tiny_configs, build_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_models_convert_to_float16(tiny_dirs, tmp_path, monkeypatch, capsys):
    original = TARGET_MODEL_CLASSES["sam3"].from_pretrained(tiny_dirs["sam3"])
    checkpoint = tmp_path / "medsam3.pt"
    torch.save({"model": export_meta_state_dict(original)}, checkpoint)
    # the tiny architecture stands in for the full-size one, and its tokenizer for CLIP's (no downloads)
    tiny_config = build_tiny_configs()["sam3"]
    monkeypatch.setitem(medsam3.model.sam3.meta_checkpoint.FULL_SIZE_CONFIG_CLASSES, "sam3", lambda: tiny_config)
    monkeypatch.setattr(medsam3.model.sam3.processors, "load_clip_tokenizer", lambda folder=None: build_tiny_tokenizer())

    assert main(["models", "convert", str(checkpoint), "--dtype", "float16", "--output", str(tmp_path / "f16")]) == 0
    assert str(tmp_path / "f16") in capsys.readouterr().out
    weight = "detr_decoder.query_embed.weight"
    with safe_open(str(tmp_path / "f16" / "model.safetensors"), "pt") as saved:
        stored = saved.get_tensor(weight)
    assert stored.dtype == torch.float16
    assert torch.equal(stored, original.state_dict()[weight].to(torch.float16))


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_verify_refuses_an_unsafe_pickle_without_suggesting_the_unsafe_option(tiny_dirs, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(tiny_dirs["sam3_video"], folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    payload = RunsCode()
    payload.marker = tmp_path / "code-ran"
    torch.save({**weights, "payload": payload}, folder / "pytorch_model.bin")

    assert main(["models", "verify", str(folder), "--device", "cpu"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert "internal error" not in error and "weights_only" not in error
    assert str(folder) in error and "refused" in error and "safetensors" in error
    assert not payload.marker.exists()
