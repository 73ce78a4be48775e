"""CPU speed levers of issue 22 change no result: the rotary rotation as one complex product, and a ViT block's
first norm handing bfloat16 to its attention, give bit for bit the answers of transformers' own code."""

from __future__ import annotations

import pytest
import torch
from transformers import Sam3TrackerConfig, Sam3TrackerModel
from transformers.models.sam3 import modeling_sam3
from transformers.models.sam3_tracker_video import modeling_sam3_tracker_video

from medsam3.model.sam3.precision import PrecisionPlan, apply_precision
from medsam3.model.sam3.processors import build_processor
from medsam3.model.sam3.rotary_tables import cache_rotary_tables, rotary_as_complex_product
from medsam3.model.sam3.tiny_models import TINY_IMAGE_SIZE, build_tiny_configs
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel
from medsam3.model.sam3.transformers_patches import ROTARY_ORIGINALS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unpatched(module):
    return ROTARY_ORIGINALS.get(module.__name__, module.apply_rotary_pos_emb_2d)


def _tables(rotary_class, config, grid: int):
    """cos / sin as the model's own rotary module makes them, for a grid x grid window."""
    rotary = rotary_class(config)
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    positions = torch.stack([columns.flatten(), rows.flatten()], dim=-1).float() * 1.7
    return rotary(torch.zeros(1), positions)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_complex_rotary_product_is_transformers_rotation_bit_for_bit(dtype):
    original = _unpatched(modeling_sam3)
    cos, sin = _tables(modeling_sam3.Sam3ViTRotaryEmbedding, build_tiny_configs()["sam3_tracker"].vision_config
                       .backbone_config, 6)
    torch.manual_seed(0)
    head_dim = cos.shape[-1]
    # (windows, tokens, heads, head_dim) seen as (windows, heads, tokens, head_dim), as the ViT's attention does
    q = (torch.randn(3, 36, 4, head_dim) * 20).to(dtype).transpose(1, 2)
    k = (torch.randn(3, 36, 4, head_dim) * 20).to(dtype).transpose(1, 2)
    fast = rotary_as_complex_product(original)
    for expected, answer in zip(original(q, k, cos, sin), fast(q, k, cos, sin)):
        assert answer.dtype == expected.dtype and answer.shape == expected.shape
        assert torch.equal(answer, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_memory_attentions_rotation_with_repeated_frames_and_unrotated_keys_is_unchanged(dtype):
    """The memory attention's cross-attention: keys of several remembered frames (tables repeated per frame)
    followed by object-pointer tokens left unrotated."""
    original = _unpatched(modeling_sam3_tracker_video)
    config = build_tiny_configs()["sam3_tracker_video"]
    cos, sin = _tables(modeling_sam3_tracker_video.Sam3TrackerVideoVisionRotaryEmbedding, config, 5)
    head_dim = cos.shape[-1]
    torch.manual_seed(1)
    q = (torch.randn(1, 2, 25, head_dim) * 5).to(dtype)
    k = (torch.randn(1, 2, 3 * 25 + 4, head_dim) * 5).to(dtype)
    fast = rotary_as_complex_product(original)
    for options in ({}, {"num_k_exclude_rope": 4, "repeat_freqs_k": True}, {"num_k_exclude_rope": 79}):
        kk = k if options else k[..., :25, :]
        for expected, answer in zip(original(q, kk, cos, sin, **options), fast(q, kk, cos, sin, **options)):
            assert torch.equal(answer, expected), options


def test_tables_that_are_not_pairwise_go_to_transformers_own_function():
    calls = []
    fast = rotary_as_complex_product(lambda *args, **kwargs: calls.append(1) or ("theirs", "theirs"))
    cos, sin = torch.rand(1, 4, 8), torch.rand(1, 4, 8)  # neighbouring channels differ: not an axial table
    assert fast(torch.rand(1, 1, 4, 8), torch.rand(1, 1, 4, 8), cos, sin) == ("theirs", "theirs") and calls


def _tiny_tracker_pair():
    torch.manual_seed(0)
    config: Sam3TrackerConfig = build_tiny_configs()["sam3_tracker"]
    reference = Sam3TrackerModel(config).eval()
    levered = Sam3TrackerModel(config).eval()
    levered.load_state_dict(reference.state_dict())
    return reference, levered


def test_a_slice_encoding_with_the_complex_rotary_is_the_unpatched_encoding(monkeypatch):
    reference, levered = _tiny_tracker_pair()
    model = TransformersSegmentationModel.from_components(
        {"sam3_tracker": (levered, build_processor("sam3_tracker", TINY_IMAGE_SIZE))}, "tiny", TINY_IMAGE_SIZE,
        precision="float32")
    for module in (modeling_sam3, modeling_sam3_tracker_video):  # the ViT's and the memory attention's
        assert module.apply_rotary_pos_emb_2d is not _unpatched(module)
    image = torch.rand(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE).numpy()
    encoding = model.encode_for_prompts(image)
    monkeypatch.setattr(modeling_sam3, "apply_rotary_pos_emb_2d", _unpatched(modeling_sam3))
    with torch.inference_mode():
        expected = reference.get_image_embeddings(model._pixels(image, "sam3_tracker"))
    assert all(torch.equal(a, b) for a, b in zip(encoding, expected))


def test_the_bfloat16_paths_norm_cast_leaves_the_encoding_unchanged():
    """On the bfloat16 path each ViT block's first norm hands bfloat16 to the attention; the encoding is bit for
    bit that of the same bfloat16 path without it (autocast casting the norm's float32 output per product)."""
    plain, levered = _tiny_tracker_pair()
    plan = PrecisionPlan("bfloat16", "asked for")
    for model in (plain, levered):
        cache_rotary_tables(apply_precision(model, plan))
    norms = [layer.layer_norm1 for layer in levered.vision_encoder.backbone.layers]
    assert norms and all("forward" in vars(norm) for norm in norms)
    for layer in plain.vision_encoder.backbone.layers:
        vars(layer.layer_norm1).pop("forward")  # the bfloat16 path as it was before the lever
    pixels = torch.rand(1, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    with torch.inference_mode():
        expected, answer = plain.get_image_embeddings(pixels), levered.get_image_embeddings(pixels)
    assert all(a.dtype == torch.float32 and torch.equal(a, b) for a, b in zip(answer, expected))
