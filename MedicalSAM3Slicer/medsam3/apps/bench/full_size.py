"""A full-size SAM 3 with random weights, saved once as a one-folder model (like a converted Medical SAM3
checkpoint: one ``Sam3VideoModel`` folder that every class loads from), so that the bench measures the engine's
own loading path: the resident memory of the loaded model and the whole-volume work per slice.

Speed and memory do not depend on the weights' values, only on their shapes, so random weights measure what a
real checkpoint would cost. The folder (about 3.4 GB in float32) lives in the engine's cache
(``~/.cache/medsam3/bench-full-size-random``) and is built once; ``medsam3 bench --model tiny`` uses the tiny
random set instead (seconds, for the bench's own test).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

FOLDER_NAME = "bench-full-size-random"
_MARKER = "bench_full_size_v2.json"


def full_size_folder(cache_dir: str | Path | None = None, seed: int = 0) -> Path:
    """The saved full-size random model (built on first use)."""
    import torch

    from ...model.sam3.meta_checkpoint.config import full_size_config
    from ...model.sam3.model_classes import MODEL_CLASSES
    from ...model.sam3.processors import build_processor
    from ...model.model_sources import cache_directory

    folder = cache_directory(cache_dir) / FOLDER_NAME
    if (folder / _MARKER).is_file() and (folder / "model.safetensors").is_file():
        return folder
    print(f"building a full-size SAM 3 with random weights into {folder} (once, about 3.4 GB) ...", flush=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{FOLDER_NAME}.partial-"))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MODEL_CLASSES["sam3_video"](full_size_config("sam3_video")).eval()
        _save_like_the_converter(model, staging)
        del model
        build_processor("sam3_video", 1008, _tokenizer()).save_pretrained(str(staging))
        (staging / _MARKER).write_text(json.dumps({"seed": seed, "weights": "random, full size"}))
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _save_like_the_converter(model, folder: Path) -> None:
    """The weights under the model's own parameter names, as ``medsam3 models convert`` writes them (every class
    then loads from the folder; transformers' ``save_pretrained`` doubles the tracker's prefix on some names)."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    state = {}
    for name, tensor in model.state_dict().items():
        pointer = tensor.untyped_storage().data_ptr()
        state[name] = tensor.clone() if pointer in seen else tensor.contiguous()
        seen.add(pointer)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(folder)


def _tokenizer():
    """The tiny byte-level tokenizer (built here, no download): the full-size text encoder's work is the same
    with it (32 tokens either way), only the token ids differ from CLIP's."""
    from ...model.sam3.tiny_models import build_tiny_tokenizer

    return build_tiny_tokenizer()


def tiny_folder(cache_dir: str | Path | None = None) -> Path:
    """The tiny random set (one sub-folder per class), for ``--model tiny``."""
    from ...model.model_sources import cache_directory
    from ...model.sam3.tiny_models import save_tiny_models

    root = cache_directory(cache_dir) / "bench-tiny-random"
    save_tiny_models(root)
    return root
