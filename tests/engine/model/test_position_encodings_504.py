"""At 504 px, our transformers configuration builds the rotary position encodings the Medical SAM3 authors' fork
builds for its 3D checkpoint.

The fork (AIM-Research-Lab/Medical-SAM3, ``sam3/model_builder.py``) calls ``build_sam3_video_model(...,
image_size=504)``: the ViT gets ``img_size=504`` and the tracker's memory attention ``feat_sizes=[36, 36]``, and
the checkpoint's ``freqs_cis`` tables (made for 1008 px) are dropped so that the ones built for 504 px stay. The
tables are computed by Meta's unchanged code (``sam3/model/vitdet.py``: ``compute_axial_cis`` with
``rope_pt_size`` = the 24-token window and ``use_interp_rope``; ``sam3/sam/transformer.py``: ``RoPEAttention``).
The computation is re-derived below from those steps, independently of both code bases, and compared with what
``resize_config`` (the adapter's path for another input size) makes transformers build, with what a model saved
at 1008 px and loaded through ``TransformersSegmentationModel(..., image_size=504)`` uses (from_pretrained, the
resized config, the cached rotary tables: the path a user's 3D checkpoint takes), and with Meta's own modules
built the fork's way.
"""

import contextlib

import numpy as np
import pytest
import torch

from medsam3.model.sam3.meta_checkpoint import full_size_config
from medsam3.model.sam3.processors import build_processor
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel, resize_config
from transformers import Sam3TrackerVideoModel, Sam3VideoConfig, Sam3VideoModel

SIZE = 504
PATCH = 14
WINDOW = 24  # the ViT's window, and the grid its rotary tables were pretrained on (rope_pt_size)
GLOBAL_BLOCKS = (7, 15, 23, 31)
VIT_HEAD_DIM = 1024 // 16
MEMORY_HEAD_DIM = 256  # the memory attention: 256 wide, one head, no down-sampling
THETA = 10000.0


def fork_rotary_angles(head_dim: int, grid: int, scale: float) -> torch.Tensor:
    """The fork's axial rotary angles, (grid*grid, head_dim/2) in float64, one row per token in raster order:
    the first half of each row turns with the token's column, the second with its row; positions are scaled by
    ``scale`` (the pretraining grid over this grid, when interpolated)."""
    frequencies = 1.0 / THETA ** (torch.arange(0, head_dim, 4, dtype=torch.float64)[: head_dim // 4] / head_dim)
    token = torch.arange(grid * grid, dtype=torch.float64)
    column, row = (token % grid) * scale, torch.div(token, grid, rounding_mode="floor") * scale
    return torch.cat([torch.outer(column, frequencies), torch.outer(row, frequencies)], dim=-1)


def assert_rotation_matches(cos: torch.Tensor, sin: torch.Tensor, angles: torch.Tensor) -> float:
    """transformers rotates channel pairs (2k, 2k+1) by one angle each (cos/sin repeated per pair); Meta rotates
    the complex number made of the same pair. Returns the largest difference."""
    cos, sin = cos.reshape(-1, cos.shape[-1]).double(), sin.reshape(-1, sin.shape[-1]).double()
    assert cos.shape == (angles.shape[0], 2 * angles.shape[1])
    assert torch.equal(cos[:, 0::2], cos[:, 1::2]) and torch.equal(sin[:, 0::2], sin[:, 1::2])
    difference = max(float((cos[:, 0::2] - angles.cos()).abs().max()),
                     float((sin[:, 0::2] - angles.sin()).abs().max()))
    assert difference < 1e-5, difference
    return difference


@contextlib.contextmanager
def parameters_on_meta_device():
    """Parameters are not allocated (the full-size model is 860M parameters); buffers such as the rotary
    position grids are computed on the CPU as usual."""
    register_parameter = torch.nn.Module.register_parameter

    def register_on_meta(module, name, parameter):
        if parameter is not None:
            parameter = torch.nn.Parameter(parameter.to("meta"), requires_grad=False)
        register_parameter(module, name, parameter)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register_parameter


@pytest.fixture(scope="module")
def configured_at_504():
    """The full-size video model as the adapter configures it for 504 px: the converter's configuration,
    resized by ``resize_config`` (see ``TransformersSegmentationModel.component``)."""
    config = Sam3VideoConfig.from_dict(resize_config(full_size_config("sam3_video").to_dict(), SIZE))
    with parameters_on_meta_device():
        model = Sam3VideoModel(config)
    return model.detector_model.vision_encoder.backbone.layers, model.tracker_model.memory_attention


@pytest.fixture(scope="module")
def loaded_at_504(tmp_path_factory):
    """A video tracker saved at 1008 px with the converter's full-size geometry (32 ViT blocks, 24-token
    windows, 64-wide heads, the 256-wide memory attention), only the ViT made narrow (one head instead of 16)
    so that it is quick to save, then loaded as a user's model is, through ``TransformersSegmentationModel``
    at 504 px; its rotary modules are the cached ones the engine runs."""
    loaded = narrow_tracker_saved_at_1008_loaded_at_504(tmp_path_factory.mktemp("saved_at_1008"))
    model, _ = loaded.component("sam3_tracker_video")
    return model.vision_encoder.backbone.layers, model.memory_attention


def narrow_tracker_saved_at_1008_loaded_at_504(folder, vit_layers: int | None = None):
    """A video tracker with the converter's full-size geometry but a one-head ViT (``vit_layers`` blocks, the
    last one global, when given), saved at 1008 px into ``folder`` and loaded at 504 px as a user's model is."""
    config = full_size_config("sam3_tracker_video")
    vit = config.vision_config.backbone_config
    assert (vit.image_size, vit.hidden_size // vit.num_attention_heads) == (1008, VIT_HEAD_DIM)
    vit.hidden_size, vit.num_attention_heads, vit.intermediate_size = VIT_HEAD_DIM, 1, 2 * VIT_HEAD_DIM
    if vit_layers is not None:
        vit.num_hidden_layers, vit.global_attn_indexes = vit_layers, [vit_layers - 1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Sam3TrackerVideoModel(config).save_pretrained(folder / "sam3_tracker_video")
    build_processor("sam3_tracker_video", 1008).save_pretrained(folder / "sam3_tracker_video")
    return TransformersSegmentationModel(folder, "saved at 1008 px", image_size=SIZE, precision="float32")


@pytest.fixture(params=["configured", "loaded"])
def model_at_504(request):
    """(ViT blocks, memory attention) at 504 px: as configured by ``resize_config``, and as loaded."""
    return request.getfixturevalue(f"{request.param}_at_504")


def test_vit_rotary_tables_match_the_forks_at_504_px(model_at_504):
    layers, _ = model_at_504
    assert len(layers) == 32
    grid = SIZE // PATCH  # 36 tokens a side in the global-attention blocks
    for index, layer in enumerate(layers):
        # Meta's ViT: window blocks see 24 x 24 tokens, global blocks the whole 36 x 36 grid; with interpolated
        # rope, positions are scaled by rope_pt_size / input_size = 24 / tokens a side.
        side = grid if index in GLOBAL_BLOCKS else WINDOW
        angles = fork_rotary_angles(VIT_HEAD_DIM, side, WINDOW / side)
        probe = torch.zeros(1, side * side, VIT_HEAD_DIM)
        cos, sin = layer.rotary_emb(probe, layer.position_ids)
        assert_rotation_matches(cos, sin, angles)
    # The 1008-px tables in the checkpoint place global-block tokens 1/3 of a window step apart, these 2/3:
    # using them at 504 px would be wrong, which is why the fork (and the converter) drops them.
    at_1008 = fork_rotary_angles(VIT_HEAD_DIM, 2 * grid, WINDOW / (2 * grid))
    assert not torch.allclose(at_1008[: grid * grid], fork_rotary_angles(VIT_HEAD_DIM, grid, WINDOW / grid))


def test_memory_attention_rotary_table_matches_the_forks_at_504_px(model_at_504):
    _, memory_attention = model_at_504
    grid = SIZE // PATCH  # the fork: RoPEAttention(feat_sizes=[image_size // 14] * 2), no position scaling
    angles = fork_rotary_angles(MEMORY_HEAD_DIM, grid, 1.0)
    probe = torch.zeros(1, grid * grid, MEMORY_HEAD_DIM)
    cos, sin = memory_attention.rotary_emb(probe, memory_attention.position_ids)
    assert_rotation_matches(cos, sin, angles)


def test_re_derivation_agrees_with_metas_own_modules_built_the_forks_way():
    """The same angles from Meta's ``sam3`` package (the fork's vitdet.py and RoPEAttention are Meta's), built
    with the fork's 504-px arguments: the re-derivation above is the fork's computation."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sam3.model.vitdet import Attention
        from sam3.sam.transformer import RoPEAttention

    grid = SIZE // PATCH
    with parameters_on_meta_device():
        global_block = Attention(1024, num_heads=16, qkv_bias=True, input_size=(grid, grid), use_rope=True,
                                 rope_pt_size=(WINDOW, WINDOW), rope_interp=True)
        window_block = Attention(1024, num_heads=16, qkv_bias=True, input_size=(WINDOW, WINDOW), use_rope=True,
                                 rope_pt_size=(WINDOW, WINDOW), rope_interp=True)
        memory = RoPEAttention(embedding_dim=256, num_heads=1, downsample_rate=1, rope_theta=THETA,
                               feat_sizes=[grid, grid])
    for table, angles in ((global_block.freqs_cis, fork_rotary_angles(VIT_HEAD_DIM, grid, WINDOW / grid)),
                          (window_block.freqs_cis, fork_rotary_angles(VIT_HEAD_DIM, WINDOW, 1.0)),
                          (memory.freqs_cis, fork_rotary_angles(MEMORY_HEAD_DIM, grid, 1.0))):
        assert table.shape == angles.shape
        assert float((table.to(torch.complex128) - torch.polar(torch.ones_like(angles), angles)).abs().max()) < 1e-5


def test_a_click_on_a_model_saved_at_1008_px_and_run_at_504_px_lands_where_it_was_given(tmp_path):
    """The 3D checkpoint runs at 504 px while its saved processor says 1008: a click given at (x, y) on the
    504 px model image must reach the tracker's prompt encoder at (x, y), not at (2x, 2y) (before the fix,
    propagation from a click at 504 px started from a point twice as far from the corner)."""
    from medsam3.model.segmentation_model import ModelPrompt

    loaded = narrow_tracker_saved_at_1008_loaded_at_504(tmp_path, vit_layers=4)
    model, _ = loaded.component("sam3_tracker_video")

    received = []
    hook = model.prompt_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: received.append(kwargs.get("input_points", args[0] if args else None)),
        with_kwargs=True)

    class TwoSlices:
        def __len__(self):
            return 2

        def image(self, index):
            return np.full((SIZE, SIZE), 0.5, dtype=np.float32)

        def embedding(self, index, compute, role=""):
            return compute(self.image(index))

    click_xy = np.array([[120.0, 300.0]])
    try:
        list(loaded.track(TwoSlices(), {0: ModelPrompt(click_xy, np.array([1]))}, 0, False))
    finally:
        hook.remove()
    points = [p for p in received if p is not None]
    assert points, "the click never reached the prompt encoder"
    given = points[0].reshape(-1, 2)[0].float().numpy()
    np.testing.assert_allclose(given, click_xy[0], atol=1e-3)
