"""Tiny random-weight SAM 3 models and their processors, for tests that must run in seconds on a CPU.

The four transformers SAM 3 classes are built from shrunken configurations that keep the full-size wiring:
the same modules, the same three-level feature pyramid (strides 4, 2, 1 relative to the patch grid), the
same three-layer MLP heads and four-stage mask downsampler, so that code written against these models (and the
Meta checkpoint key mapping) works unchanged on the real ones. Nothing is downloaded: the CLIP tokenizer is
built here from a small byte-level vocabulary.

Keys used throughout: ``"sam3"`` (``Sam3Model``), ``"sam3_tracker"`` (``Sam3TrackerModel``),
``"sam3_tracker_video"`` (``Sam3TrackerVideoModel``) and ``"sam3_video"`` (``Sam3VideoModel``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    CLIPTokenizer,
    PretrainedConfig,
    Sam3Config,
    Sam3TrackerConfig,
    Sam3TrackerVideoConfig,
    Sam3VideoConfig,
    Sam3VideoModel,
    Sam3VisionConfig,
    Sam3ViTConfig,
)

from .model_classes import MODEL_CLASSES
from .processors import SAM3_PATCH_SIZE, build_processor

TINY_IMAGE_SIZE = 224  # 16 x 16 patches
TINY_PATCH_GRID = TINY_IMAGE_SIZE // SAM3_PATCH_SIZE
TINY_LOW_RES_MASK_SIZE = 4 * TINY_PATCH_GRID  # 64, like 288 for the 1008-px full-size models

# Hidden widths. The prompt/mask/memory side (d_model) must be a multiple of 64 larger than 64: the tracker
# splits object pointers into chunks of the 64-channel memory and fails when both are equal.
_D_MODEL = 128
_VIT_WIDTH = 64
_TEXT_WIDTH = 64
_NUM_HEADS = 2


# Words that get a single token in the tiny vocabulary (anything else is spelled out byte by byte).
_TINY_VOCABULARY_WORDS = ("liver", "kidney", "tumor", "cat")
_SAVED_SET_MARKER = "tiny_models.json"
_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def _byte_level_alphabet() -> list[str]:
    """The 256 printable characters that byte-level BPE uses to stand for the 256 byte values."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\N{INVERTED EXCLAMATION MARK}"), ord("\N{NOT SIGN}") + 1),
        *range(ord("\N{REGISTERED SIGN}"), ord("\N{LATIN SMALL LETTER Y WITH DIAERESIS}") + 1),
    ]
    stand_ins = {byte: chr(byte) for byte in printable}
    next_free = 256
    for byte in range(256):
        if byte not in stand_ins:
            stand_ins[byte] = chr(next_free)
            next_free += 1
    return [stand_ins[byte] for byte in range(256)]


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer over the byte-level alphabet plus a few whole words, built without any download."""
    alphabet = _byte_level_alphabet()
    tokens = alphabet + [character + "</w>" for character in alphabet]
    merges: list[tuple[str, str]] = []
    for word in _TINY_VOCABULARY_WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            merges.append((pieces[0], pieces[1]))
            if merged not in tokens:
                tokens.append(merged)
            pieces = [merged, *pieces[2:]]
    tokens.extend(_SPECIAL_TOKENS)
    vocabulary = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocabulary, merges=merges, model_max_length=32)


def _tiny_vision_config() -> Sam3VisionConfig:
    grid = TINY_PATCH_GRID
    return Sam3VisionConfig(
        backbone_config=Sam3ViTConfig(
            hidden_size=_VIT_WIDTH,
            intermediate_size=2 * _VIT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=_NUM_HEADS,
            image_size=TINY_IMAGE_SIZE,
            patch_size=SAM3_PATCH_SIZE,
            window_size=8,
            global_attn_indexes=[1],
            pretrain_image_size=TINY_IMAGE_SIZE,
        ),
        fpn_hidden_size=_D_MODEL,
        backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
    )


def _tiny_detector_config(tokenizer: CLIPTokenizer) -> Sam3Config:
    transformer_sizes = {"hidden_size": _D_MODEL, "num_attention_heads": _NUM_HEADS, "intermediate_size": 2 * _D_MODEL}
    return Sam3Config(
        vision_config=_tiny_vision_config(),
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": _TEXT_WIDTH,
            "intermediate_size": 2 * _TEXT_WIDTH,
            "projection_dim": _TEXT_WIDTH,
            "num_hidden_layers": 2,
            "num_attention_heads": _NUM_HEADS,
            "max_position_embeddings": 32,
            "hidden_act": "gelu",
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        geometry_encoder_config={**transformer_sizes, "num_layers": 1},
        detr_encoder_config={**transformer_sizes, "num_layers": 1},
        detr_decoder_config={**transformer_sizes, "num_layers": 1, "num_queries": 8},
        mask_decoder_config={"hidden_size": _D_MODEL, "num_attention_heads": _NUM_HEADS},
    )


def _tiny_prompt_and_mask_decoder_configs() -> dict[str, dict]:
    return {
        "prompt_encoder_config": {
            "hidden_size": _D_MODEL,
            "image_size": TINY_IMAGE_SIZE,
            "patch_size": SAM3_PATCH_SIZE,
        },
        "mask_decoder_config": {
            "hidden_size": _D_MODEL,
            "mlp_dim": 2 * _D_MODEL,
            "num_attention_heads": _NUM_HEADS,
            "iou_head_hidden_dim": _D_MODEL,
        },
    }


def _tiny_tracker_video_config() -> Sam3TrackerVideoConfig:
    return Sam3TrackerVideoConfig(
        vision_config=_tiny_vision_config(),
        **_tiny_prompt_and_mask_decoder_configs(),
        image_size=TINY_IMAGE_SIZE,  # without it the config resets itself to 1008
        num_maskmem=3,
        memory_attention_hidden_size=_D_MODEL,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=2 * _D_MODEL,
        memory_encoder_hidden_size=_D_MODEL,
        mask_downsampler_embed_dim=_D_MODEL,
        memory_fuser_embed_dim=_D_MODEL,
        memory_fuser_intermediate_dim=2 * _D_MODEL,
        memory_fuser_num_layers=1,
    )


def build_tiny_configs() -> dict[str, PretrainedConfig]:
    """Shrunken configurations of the four SAM 3 classes, keyed "sam3", "sam3_tracker", "sam3_tracker_video",
    "sam3_video"; all at ``TINY_IMAGE_SIZE`` with a vocabulary matching ``build_tiny_tokenizer()``.

    The video model's detection thresholds are 0 and it tracks at most 2 objects: random weights score every
    query near 0.25, so with the real thresholds nothing would ever be detected, and with no cap every frame
    would add new objects.
    """
    detector = _tiny_detector_config(build_tiny_tokenizer())
    tracker_video = _tiny_tracker_video_config()
    return {
        "sam3": detector,
        "sam3_tracker": Sam3TrackerConfig(
            vision_config=_tiny_vision_config(), **_tiny_prompt_and_mask_decoder_configs()
        ),
        "sam3_tracker_video": tracker_video,
        "sam3_video": Sam3VideoConfig(
            detector_config=detector.to_dict(),
            tracker_config=tracker_video.to_dict(),
            low_res_mask_size=TINY_LOW_RES_MASK_SIZE,
            score_threshold_detection=0.0,
            new_det_thresh=0.0,
            max_num_objects=2,
        ),
    }


def _tie_tracker_positional_embeddings(model: torch.nn.Module) -> None:
    """Make the tracker's image-wide positional embedding equal to its prompt-encoder one.

    transformers keeps two copies (``shared_image_embedding`` and ``prompt_encoder.shared_embedding``) that
    real checkpoints fill from the single Meta tensor ``sam_prompt_encoder.pe_layer...``; random
    initialisation makes them differ, which no Meta checkpoint can express.
    """
    tracker = model.tracker_model if isinstance(model, Sam3VideoModel) else model
    if hasattr(tracker, "shared_image_embedding"):
        with torch.no_grad():
            tracker.shared_image_embedding.positional_embedding.copy_(
                tracker.prompt_encoder.shared_embedding.positional_embedding
            )


def _saved_set_is_complete(directory: Path, seed: int) -> bool:
    marker = directory / _SAVED_SET_MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return recorded.get("seed") == seed and all(
        (directory / key / name).is_file()
        for key in MODEL_CLASSES
        for name in ("config.json", "model.safetensors", "processor_config.json")
    )


def save_tiny_models(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Build the four tiny models with ``torch.manual_seed(seed)`` and save each with its processor into
    ``directory/<key>``, loadable offline with ``XxxModel.from_pretrained`` / ``AutoProcessor.from_pretrained``.

    Reuses a complete set saved earlier with the same seed. Returns the subdirectory of each key.
    """
    directory = Path(directory)
    paths = {key: directory / key for key in MODEL_CLASSES}
    if _saved_set_is_complete(directory, seed):
        return paths

    directory.mkdir(parents=True, exist_ok=True)
    configs = build_tiny_configs()
    tokenizer = build_tiny_tokenizer()
    with tempfile.TemporaryDirectory(dir=directory, prefix=".building-") as staging:
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            torch.manual_seed(seed)
            for key, model_class in MODEL_CLASSES.items():
                model = model_class(configs[key]).eval()
                _tie_tracker_positional_embeddings(model)
                staged = Path(staging) / key
                model.save_pretrained(staged)
                build_processor(key, TINY_IMAGE_SIZE, tokenizer).save_pretrained(staged)
        (directory / _SAVED_SET_MARKER).unlink(missing_ok=True)
        for key, path in paths.items():
            if path.exists():
                shutil.rmtree(path)
            (Path(staging) / key).rename(path)
    (directory / _SAVED_SET_MARKER).write_text(json.dumps({"seed": seed, "image_size": TINY_IMAGE_SIZE}))
    return paths
