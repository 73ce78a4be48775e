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

The rotation itself (transformers' ``apply_rotary_pos_emb_2d`` of the ViT and of the memory attention) is computed
as one complex product per tensor (:func:`rotary_as_complex_product`): the same arithmetic in fewer passes over
memory, bit for bit the same result (issue 22).
"""

from __future__ import annotations

import functools

import torch

from .transformers_patches import cache_fixed_tables, rotate_by_complex_products



def cache_rotary_tables(model: torch.nn.Module) -> int:
    """Wrap every ViT rotary embedding of ``model`` (in place); returns how many were wrapped. Idempotent.
    (The wrapping itself is the ``rotary_tables`` / ``image_wide_positions`` patch of
    :mod:`.transformers_patches`.)"""
    rotate_by_complex_products(rotary_as_complex_product)
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


_COMPLEX_TABLES_KEPT = 64  # one per rotary module (32 ViT layers, a few memory-attention layers)


def rotary_as_complex_product(original):
    """transformers' ``apply_rotary_pos_emb_2d(q, k, cos, sin, ...)`` as one complex product per tensor.

    transformers rotates each pair (x0, x1) of a head's channels by an angle: ``x * cos + rotate_pairwise(x) *
    sin`` in float32, with cos / sin repeated per pair, i.e. (x0 c - x1 s, x1 c + x0 s). That is the product of
    the complex number x0 + i x1 with c + i s, which torch computes in one pass with the same roundings (a
    product, then a sum or difference), where transformers makes about ten passes (upcast, two products, a
    negation, a stack, a sum, per tensor) over 2.4M-element tensors in every ViT block: about a fifth of a
    bfloat16 ViT's time on the AVX-512 BF16 EPYC (docs/benchmark.md). The result is bit for bit transformers';
    tables whose pairs are not equal (not transformers' axial rotary), and devices other than CPU and CUDA, go to
    ``original``. Works for the ViT's
    signature and the memory attention's (``num_k_exclude_rope``, ``repeat_freqs_k``)."""
    tables: dict[int, tuple] = {}

    def complex_table(cos: torch.Tensor, sin: torch.Tensor):
        held = tables.get(id(cos))
        if held is None or held[0] is not cos or held[1] is not sin:
            pairs_equal = (cos.shape[-1] % 2 == 0 and torch.equal(cos[..., 0::2], cos[..., 1::2])
                           and torch.equal(sin[..., 0::2], sin[..., 1::2]))
            table = torch.complex(cos[..., 0::2].float(), sin[..., 0::2].float()) if pairs_equal else None
            if len(tables) >= _COMPLEX_TABLES_KEPT:
                tables.clear()
            held = tables[id(cos)] = (cos, sin, table, {})  # holding cos / sin keeps their ids unique
        return held

    def rotated(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        if x32.stride(-1) != 1 or x32.storage_offset() % 2 or any(step % 2 for step in x32.stride()[:-1]):
            x32 = x32.contiguous()  # a complex view needs whole pairs
        pairs = torch.view_as_complex(x32.unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * table).flatten(-2).type_as(x)

    @functools.wraps(original)
    def apply(q, k, cos, sin, num_k_exclude_rope: int = 0, repeat_freqs_k: bool = False):
        # MPS and other devices: complex arithmetic is not everywhere there
        usable = q.is_floating_point() and q.device.type in ("cpu", "cuda")
        _, _, table, repeated = complex_table(cos, sin) if usable else (None, None, None, None)
        if table is None:
            extra = {} if (num_k_exclude_rope, repeat_freqs_k) == (0, False) else {
                "num_k_exclude_rope": num_k_exclude_rope, "repeat_freqs_k": repeat_freqs_k}
            return original(q, k, cos, sin, **extra)
        q_embed = rotated(q, table)
        if num_k_exclude_rope == 0 and not repeat_freqs_k:
            return q_embed, rotated(k, table)
        k_rot, k_pass = k[..., : k.shape[-2] - num_k_exclude_rope, :], k[..., k.shape[-2] - num_k_exclude_rope:, :]
        if k_rot.shape[-2] == 0:
            return q_embed, torch.cat([k_rot, k_pass], dim=-2)
        table_k = table
        if repeat_freqs_k and k_rot.shape[-2] != q.shape[-2]:
            factor = k_rot.shape[-2] // q.shape[-2]  # transformers: cos.repeat(1, 1, factor, 1), made once here
            if factor not in repeated:
                repeated[factor] = table.repeat(1, 1, factor, 1)
            table_k = repeated[factor]
        return q_embed, torch.cat([rotated(k_rot, table_k), k_pass], dim=-2)

    return apply
