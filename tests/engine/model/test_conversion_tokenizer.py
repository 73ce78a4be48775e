"""Converting a Meta checkpoint needs SAM 3's CLIP tokenizer: offline without it, nothing is written and the user
is told in one line what to provide; a folder of tokenizer files makes offline conversion possible."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import CLIPTokenizer

from clip_vocabulary import write_clip_vocabulary
from medsam3.errors import ModelAccessError
from medsam3.model.sam3.processors import load_clip_tokenizer

PROJECT = Path(__file__).resolve().parents[3]


def run_offline_cli(*arguments, home):
    """``medsam3`` in a fresh process with an empty Hugging Face cache and HF_HUB_OFFLINE=1."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(home), MEDSAM3_CACHE=str(home / "medsam3"),
                       PYTHONPATH=str(PROJECT / "MedicalSAM3Slicer"))
    return subprocess.run([sys.executable, "-m", "medsam3.apps.cli", *map(str, arguments)], env=environment,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "medical.pt"
    torch.save({"model": {"transformer.decoder.query_embed.weight": torch.zeros(2, 3)}}, path)
    return path


def test_offline_conversion_without_a_tokenizer_is_refused_in_one_line_and_writes_nothing(checkpoint, tmp_path):
    output = tmp_path / "converted"
    result = run_offline_cli("models", "convert", checkpoint, "--output", output, home=tmp_path / "home")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert len(lines) == 1 and "--tokenizer" in lines[0] and "internet" in lines[0], result.stderr
    assert not output.exists()


def test_a_tokenizer_folder_that_is_not_clip_is_refused(tmp_path):
    folder = tmp_path / "two-tokens"
    CLIPTokenizer(vocab={"a": 0, "<|endoftext|>": 1}, merges=[]).save_pretrained(folder)
    with pytest.raises(ModelAccessError, match="not CLIP's 49408"):
        load_clip_tokenizer(folder)
    with pytest.raises(ModelAccessError, match="does not exist"):
        load_clip_tokenizer(tmp_path / "absent")


def test_a_folder_of_clip_tokenizer_files_gives_real_tokens(tmp_path):
    write_clip_vocabulary(tmp_path / "clip")
    tokenizer = load_clip_tokenizer(tmp_path / "clip")
    ids = tokenizer("spleen")["input_ids"]
    assert len(tokenizer) == 49408 and ids[0] == 49406 and ids[-1] == 49407
    assert tokenizer.unk_token_id not in ids[1:-1] and len(ids) < 8  # letters merged, nothing unknown
