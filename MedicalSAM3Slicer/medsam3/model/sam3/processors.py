"""transformers processors for the SAM 3 classes at a given input size, and the CLIP tokenizer they share.

Meta-format checkpoints carry no processor files; the converter writes them with these, so that a converted
model loads offline afterwards like any transformers-format folder.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    CLIPTokenizer,
    ProcessorMixin,
    Sam3ImageProcessor,
    Sam3Processor,
    Sam3TrackerProcessor,
    Sam3TrackerVideoProcessor,
    Sam3VideoProcessor,
)
from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

from ...errors import ModelAccessError
from .model_classes import PROCESSOR_CLASSES

SAM3_PATCH_SIZE = 14  # the ViT patch of every SAM 3 model
SAM3_TEXT_CONTEXT = 32  # tokens of SAM 3's text encoder
# SAM 3 tokenises with OpenAI CLIP's byte-pair vocabulary (49408 tokens); this public repository has it in
# transformers format.
CLIP_TOKENIZER_REPOSITORY = "openai/clip-vit-base-patch32"


def build_processor(key: str, image_size: int, tokenizer: CLIPTokenizer | None = None) -> ProcessorMixin:
    """The processor for one of the four model keys at ``image_size`` pixels (square input).

    Images are resized to ``image_size`` and normalised with mean 0.5 / std 0.5, as SAM 3 was trained (the
    stock video processor would default to ImageNet statistics). ``tokenizer`` is required for "sam3" and
    "sam3_video" (the full-size models need the 49408-token CLIP vocabulary, not the tiny one).
    """
    if key not in PROCESSOR_CLASSES:
        raise ValueError(f"unknown model key {key!r}; expected one of {list(PROCESSOR_CLASSES)}")
    if key in ("sam3", "sam3_video") and tokenizer is None:
        raise ValueError(f"the {key!r} processor needs a CLIP tokenizer")
    low_res_mask_size = 4 * image_size // SAM3_PATCH_SIZE
    image_processor = Sam3ImageProcessor(
        size={"height": image_size, "width": image_size},
        mask_size={"height": low_res_mask_size, "width": low_res_mask_size},
    )
    video_processor = Sam2VideoVideoProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    if key == "sam3":
        return Sam3Processor(image_processor=image_processor, tokenizer=tokenizer)
    if key == "sam3_tracker":
        return Sam3TrackerProcessor(image_processor=image_processor)
    if key == "sam3_tracker_video":
        return Sam3TrackerVideoProcessor(image_processor=image_processor, video_processor=video_processor)
    return Sam3VideoProcessor(image_processor=image_processor, video_processor=video_processor, tokenizer=tokenizer)


CLIP_VOCABULARY_SIZE = 49408  # the vocabulary of OpenAI's CLIP tokenizer, which SAM 3's text encoder was trained on
TOKENIZER_NEEDED = ("The text tokenizer is needed to convert a checkpoint: connect to the internet once (it downloads "
                    f"{CLIP_TOKENIZER_REPOSITORY}, a few MB) or pass --tokenizer FOLDER, a folder holding the CLIP "
                    "tokenizer files (vocab.json and merges.txt).")


def load_clip_tokenizer(folder: str | Path | None = None) -> CLIPTokenizer:
    """SAM 3's tokenizer: from ``folder`` (CLIP tokenizer files), else from the Hugging Face cache or the Hub.

    transformers 5 no longer fails when the files are missing offline: it returns a tokenizer of two tokens that
    turns every word into unknowns. That is refused here, like a folder holding a different vocabulary."""
    source = str(folder) if folder is not None else CLIP_TOKENIZER_REPOSITORY
    if folder is not None and not Path(folder).is_dir():
        raise ModelAccessError(f"Tokenizer folder {folder} does not exist. " + TOKENIZER_NEEDED)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(source, model_max_length=SAM3_TEXT_CONTEXT)
    except (OSError, ValueError) as error:
        raise ModelAccessError(TOKENIZER_NEEDED) from error
    if len(tokenizer) != CLIP_VOCABULARY_SIZE:
        where = f"{folder} holds a tokenizer of {len(tokenizer)} tokens, not CLIP's {CLIP_VOCABULARY_SIZE}. " \
            if folder is not None else ""
        raise ModelAccessError(where + TOKENIZER_NEEDED)
    return tokenizer


def write_processor_files(directory: str | Path, image_size: int, tokenizer: CLIPTokenizer | None = None) -> None:
    """Save a processor that every SAM 3 class loads from ``directory`` (the video processor holds the image
    processor, the video processor and the tokenizer)."""
    tokenizer = tokenizer if tokenizer is not None else load_clip_tokenizer()
    build_processor("sam3_video", image_size, tokenizer).save_pretrained(str(directory))
