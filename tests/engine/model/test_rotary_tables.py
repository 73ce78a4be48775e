"""The ViT's rotary tables are computed once per input size and the encoding is bit-for-bit what it was."""

import torch
from transformers import Sam3TrackerModel
from transformers.models.sam3 import modeling_sam3

from medsam3.model.sam3.processors import build_processor
from medsam3.model.sam3.rotary_tables import cache_rotary_tables
from medsam3.model.sam3.tiny_models import TINY_IMAGE_SIZE, build_tiny_configs
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel


def test_rotary_tables_are_made_once_and_the_encoding_does_not_change(one_torch_thread, monkeypatch):
    torch.manual_seed(0)
    plain = Sam3TrackerModel(build_tiny_configs()["sam3_tracker"]).eval()
    cached = Sam3TrackerModel(build_tiny_configs()["sam3_tracker"]).eval()
    cached.load_state_dict(plain.state_dict())
    layers = len(cached.vision_encoder.backbone.layers)
    model = TransformersSegmentationModel.from_components(
        {"sam3_tracker": (cached, build_processor("sam3_tracker", TINY_IMAGE_SIZE))}, "tiny", TINY_IMAGE_SIZE,
        precision="float32")
    assert cache_rotary_tables(cached) == 0  # already wrapped by the model, once

    calls = []
    original = modeling_sam3.Sam3ViTRotaryEmbedding.recomposition_frequencies
    monkeypatch.setattr(modeling_sam3.Sam3ViTRotaryEmbedding, "recomposition_frequencies",
                        lambda self, freq: calls.append(1) or original(self, freq))
    images = [torch.rand(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE).numpy() for _ in range(3)]
    encodings = [model.encode_for_prompts(image) for image in images]
    assert len(calls) == 2 * layers  # cos and sin of each layer, for the first slice only

    for image, encoding in zip(images, encodings):
        pixels = model._pixels(image, "sam3_tracker")
        with torch.inference_mode():
            expected = plain.get_image_embeddings(pixels)
        assert all(torch.equal(a, b) for a, b in zip(encoding, expected))


def test_a_click_reuses_the_decoders_positional_table_and_answers_as_before(one_torch_thread, monkeypatch):
    """The mask decoder's image-wide positional embedding is made once per model, not on every click; the click
    logits are bit for bit those of the unchanged model."""
    import numpy as np

    from medsam3.model.segmentation_model import ModelPrompt
    from transformers.models.sam3_tracker import modeling_sam3_tracker

    calls = []
    original = modeling_sam3_tracker.Sam3TrackerModel.get_image_wide_positional_embeddings
    monkeypatch.setattr(modeling_sam3_tracker.Sam3TrackerModel, "get_image_wide_positional_embeddings",
                        lambda self: calls.append(1) or original(self))
    torch.manual_seed(0)
    plain = Sam3TrackerModel(build_tiny_configs()["sam3_tracker"]).eval()
    cached = Sam3TrackerModel(build_tiny_configs()["sam3_tracker"]).eval()
    cached.load_state_dict(plain.state_dict())
    model = TransformersSegmentationModel.from_components(
        {"sam3_tracker": (cached, build_processor("sam3_tracker", TINY_IMAGE_SIZE))}, "tiny", TINY_IMAGE_SIZE,
        precision="float32")
    reference = TransformersSegmentationModel.from_components(
        {"sam3_tracker": (plain, build_processor("sam3_tracker", TINY_IMAGE_SIZE))}, "tiny", TINY_IMAGE_SIZE,
        precision="float32")
    del plain.get_image_wide_positional_embeddings  # the reference recomputes it on every click, as before
    embedding = model.encode_for_prompts(torch.rand(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE).numpy())
    prompts = [ModelPrompt(np.array([[x, 40.0]]), np.array([1])) for x in (20.0, 40.0, 60.0)]
    answers = [model.segment_with_prompt(embedding, prompt) for prompt in prompts]
    assert len(calls) == 1
    for prompt, answer in zip(prompts, answers):
        expected = reference.segment_with_prompt(embedding, prompt)
        assert np.array_equal(answer.logits, expected.logits) and answer.score == expected.score
    assert len(calls) == 1 + len(prompts)
