"""Where transformers' SAM 3 classes, called naively, compute something other than Meta's model, our adapter
calls them so that they compute what Meta's model computes (tiny random-weight models; the full-size comparison
with Meta's own package is tests/engine/model/test_meta_reference.py).

- Text alone: Meta's detector always runs its geometry encoder, whose class token joins the prompt even without
  a box; ``Sam3Model`` skips the encoder without boxes. Text on a slice (``Sam3Model``) and text through the
  volume (``Sam3VideoModel``'s detector) must both depend on that class token.
- Clicks: Meta's tracker (and ``Sam3TrackerVideoModel``) add the "no memory" embedding to the feature level the
  mask decoder reads; ``Sam3TrackerModel.get_image_embeddings`` adds it to a level that is then dropped. A click
  on a slice must depend on that embedding.
"""

import numpy as np
import pytest
import torch

from medsam3.model.segmentation_model import ModelPrompt
from medsam3.model.sam3.tiny_models import TINY_IMAGE_SIZE
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Frames:
    """Two frames of a smooth synthetic image in model space, with the engine's encoding cache."""

    def __init__(self):
        y, x = np.mgrid[0:TINY_IMAGE_SIZE, 0:TINY_IMAGE_SIZE] / TINY_IMAGE_SIZE
        base = 0.5 + 0.4 * np.sin(6 * x) * np.cos(5 * y)
        self.images = [base.astype(np.float32), np.roll(base, 3, axis=1).astype(np.float32)]
        self.cache = {}

    def __len__(self):
        return len(self.images)

    def image(self, index):
        return self.images[index]

    def embedding(self, index, compute, role=""):
        if (index, role) not in self.cache:
            self.cache[index, role] = compute(self.image(index))
        return self.cache[index, role]


def adapter(tiny_dirs):
    """The four tiny models, one sub-folder each (as the engine loads them)."""
    return TransformersSegmentationModel(tiny_dirs["sam3"].parent, "tiny", device="cpu", dtype=torch.float32,
                                         bf16_autocast=False)


@torch.no_grad()
def redraw(parameter: torch.nn.Parameter, seed: int, scale: float = 1.0) -> None:
    parameter.copy_(scale * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(seed)))


def test_text_on_a_slice_carries_the_geometry_class_token_as_in_meta(tiny_dirs):
    model, frames = adapter(tiny_dirs), Frames()
    sam3, _ = model.component("sam3")
    outputs = []
    hook = sam3.register_forward_hook(lambda _module, _inputs, output: outputs.append(output))
    try:
        encoding = model.encoding(frames, 0, "text")
        model.segment_with_text(encoding, "liver")
        redraw(sam3.geometry_encoder.cls_embed.weight, seed=1)
        model.segment_with_text(encoding, "liver")
    finally:
        hook.remove()
    before, after = outputs
    assert not torch.allclose(before.pred_logits, after.pred_logits), \
        "the text scores ignore the geometry encoder's class token (Meta's detector always adds it)"
    assert not torch.allclose(before.pred_masks, after.pred_masks)


def test_text_through_the_volume_carries_the_geometry_class_token_as_in_meta(tiny_dirs):
    model, frames = adapter(tiny_dirs), Frames()
    video, _ = model.component("sam3_video")
    detector_logits = []
    hook = video.detector_model.register_forward_hook(
        lambda _module, _inputs, output: detector_logits.append(output.pred_logits.detach().clone()))
    try:
        list(model.track_text(frames, "liver", 0, False))
        before, detector_logits[:] = list(detector_logits), []
        redraw(video.detector_model.geometry_encoder.cls_embed.weight, seed=1)
        list(model.track_text(frames, "liver", 0, False))
        after = list(detector_logits)
    finally:
        hook.remove()
    assert len(before) == len(after) == 2  # the detector ran on both slices
    assert not any(torch.allclose(a, b) for a, b in zip(before, after)), \
        "Sam3VideoModel's detector ignores the geometry encoder's class token (Meta's detector always adds it)"


def test_a_click_on_a_slice_reads_the_no_memory_embedding_as_in_meta(tiny_dirs):
    model, frames = adapter(tiny_dirs), Frames()
    tracker, _ = model.component("sam3_tracker")
    click = ModelPrompt(np.array([[100.0, 120.0]]), np.array([1]))

    def clicked():
        frames.cache.clear()  # the embedding is part of the slice encoding
        return model.segment_with_prompt(model.encoding(frames, 0, "prompts"), click).logits

    with torch.no_grad():
        tracker.no_memory_embedding.zero_()
        without = clicked()
        redraw(tracker.no_memory_embedding, seed=2, scale=3.0)
        with_embedding = clicked()
    assert np.abs(with_embedding - without).max() > 1e-3, \
        "the click ignores the no-memory embedding: it went to a feature level the mask decoder never reads"
