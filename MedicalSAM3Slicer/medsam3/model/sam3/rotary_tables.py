"""The ViT's rotary tables (cos, sin), computed once per input size instead of in every block on every call.

transformers' ``Sam3ViTRotaryEmbedding.forward(x, position_ids)`` turns a layer's fixed position grid into
cos / sin tables each time a layer runs (32 layers, every slice). The tables depend only on the layer's
``position_ids`` buffer (fixed by the window size or, for global layers, the input size) and ``inv_freq``;
here each rotary module's forward is wrapped so that its first answer for a grid is kept and handed back after.
The network's code is not changed: the same function computes the tables, once.

The same holds for two other fixed tables, recomputed by transformers on every click or tracked slice: the
rotary tables of the video tracker's memory attention (``Sam3TrackerVideoVisionRotaryEmbedding``, a fixed
position grid per input size) and the mask decoder's image-wide positional embedding
(``get_image_wide_positional_embeddings``: sin / cos of a fixed grid of the prompt encoder's embedding size,
about 4 ms of a click at 504 px on the shared AVX2 machine). Their callers only read them (``repeat`` copies).
"""

from __future__ import annotations

import functools

import torch

from .transformers_patches import cache_fixed_tables



def cache_rotary_tables(model: torch.nn.Module) -> int:
    """Wrap every ViT rotary embedding of ``model`` (in place); returns how many were wrapped. Idempotent.
    (The wrapping itself is the ``rotary_tables`` / ``image_wide_positions`` patch of
    :mod:`.transformers_patches`.)"""
    return cache_fixed_tables(model, memoised_rotary, memoised_image_positions)


def memoised_image_positions(model: torch.nn.Module, compute):
    """The tracker's image-wide positional embedding, kept per embedding grid, device and weights."""
    tables: dict[tuple, torch.Tensor] = {}

    @functools.wraps(compute)
    def run():
        weights = model.shared_image_embedding.positional_embedding
        key = (tuple(model.prompt_encoder.image_embedding_size), weights.device, weights.dtype, weights.data_ptr())
        if key not in tables:
            tables.clear()
            tables[key] = compute()
        return tables[key]

    return run


def memoised_rotary(module: torch.nn.Module, forward):
    tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @functools.wraps(forward)
    def run(x: torch.Tensor, position_ids: torch.Tensor):
        # the tables are float32 whatever x is; they depend on x only through its device. The buffers are
        # never written after loading (inference tensors keep no version counter to check it by)
        key = (x.device, position_ids.data_ptr(), tuple(position_ids.shape), module.inv_freq.data_ptr())
        if key not in tables:
            tables.clear()  # one grid per layer at a time: a new input size replaces the old tables
            tables[key] = forward(x, position_ids)
        return tables[key]

    return run
