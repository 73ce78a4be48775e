"""A tiny SAM 3 model in one folder for all four classes, as facebook/sam3 and converted Medical SAM3 checkpoints
are: a tiny Sam3VideoModel written as a Meta checkpoint and converted."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Sam3VideoModel

from medsam3.model.sam3.meta_checkpoint import convert_meta_checkpoint, export_meta_state_dict
from medsam3.model.sam3.processors import write_processor_files
from medsam3.model.sam3.tiny_models import TINY_IMAGE_SIZE, build_tiny_configs, build_tiny_tokenizer, save_tiny_models


def save_one_folder_tiny_model(root: Path) -> Path:
    tiny = save_tiny_models(root / "tiny")
    checkpoint = root / "tiny_video.pt"
    torch.save({"model": export_meta_state_dict(Sam3VideoModel.from_pretrained(tiny["sam3_video"]))}, checkpoint)
    converted = root / "converted"
    convert_meta_checkpoint(checkpoint, converted, config=build_tiny_configs()["sam3_video"])
    write_processor_files(converted, TINY_IMAGE_SIZE, build_tiny_tokenizer())
    return converted
