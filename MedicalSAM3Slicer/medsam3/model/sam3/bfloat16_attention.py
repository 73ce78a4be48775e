"""The video tracker's memory attention on a CPU's bfloat16 path: its two products and its softmax in bfloat16.

Propagating a slice is mostly the memory attention: 1,296 query tokens of the slice (at 504 px) attend to up to
seven remembered frames (about 9,100 keys) in one 256-wide head, four layers deep. torch's CPU flash-attention
kernel, which SDPA runs, is no faster in bfloat16 than in float32 at that head width (measured 178 vs 181
GFLOP/s on an AVX-512 BF16 CPU), while the same attention written as a bfloat16 product of queries and keys, a
bfloat16 softmax and a bfloat16 product with the values runs about four times faster there (17 vs 64 ms a layer).
A propagated slice with full memory went from 432 to 217 ms with this alone, and to 150 ms with the memory
attention's projections in bfloat16 too (:func:`.precision.apply_precision`; docs/benchmark.md, "Issue 22, third
round").

This is transformers' own attention contract (``AttentionInterface``: the function a model's attention module
calls by the name in its config), not a change to the network: the same queries, keys, values and scaling, the
output in the caller's dtype and layout. Meta's tracker runs this arithmetic on GPUs (bfloat16 autocast), and
our CUDA path keeps SDPA under autocast, so anything but a CPU tensor goes to transformers' SDPA function, as do
the cases this function does not cover (dropout while training, a causal mask, fewer key heads than query heads,
a position bias or a paged cache).
The agreement with float32 is measured by the bench and tested (``tests/engine/model/test_bfloat16_attention.py``).

The queries go in blocks so that the scores of a block stay near :data:`SCORES_PER_BLOCK` elements: at 1008 px a
full memory holds about 36,000 keys, and the scores of all 5,184 queries at once would take 370 MB.
"""

from __future__ import annotations

import torch

ATTENTION_NAME = "medsam3_bfloat16_products"
SCORES_PER_BLOCK = 1 << 24  # score elements computed at once: 32 MB in bfloat16
_SDPA_ONLY = ("position_bias", "cache", "softcap")  # arguments only transformers' SDPA function handles


def bfloat16_products_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                attention_mask: torch.Tensor | None = None, dropout: float = 0.0,
                                scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers' attention-function signature: ``query`` (B, H, Lq, D), ``key`` / ``value`` (B, H, Lk, D) ->
    (output (B, Lq, H, D) in the query's dtype, no attention weights)."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)  # as transformers' SDPA
    if (query.device.type != "cpu" or dropout or (causal and attention_mask is None and query.shape[-2] > 1)
            or key.shape[1] != query.shape[1] or any(kwargs.get(name) is not None for name in _SDPA_ONLY)):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    keys, values = key.to(torch.bfloat16), value.to(torch.bfloat16)
    one_head = query.shape[0] * query.shape[1] == 1  # the memory attention: one image, one head
    if one_head:  # as plain matrices: a batched product of one runs 1.4x slower than the plain one (measured)
        keys, values = keys[0, 0], values[0, 0]
    queries = query.shape[-2]
    rows = max(1, SCORES_PER_BLOCK // max(1, key.shape[-2] * query.shape[0] * query.shape[1]))
    output = torch.empty(*query.shape[:-1], value.shape[-1], dtype=query.dtype, device=query.device)
    for start in range(0, queries, rows):
        block = slice(start, min(start + rows, queries))
        block_queries = (query[..., block, :] * scale).to(torch.bfloat16)
        if one_head:
            scores = torch.nn.functional.linear(block_queries[0, 0], keys)  # queries x keys, as one product
        else:
            scores = block_queries @ keys.transpose(-1, -2)
        if attention_mask is not None:
            scores = scores + (attention_mask if attention_mask.shape[-2] == 1 else attention_mask[..., block, :])
        output[..., block, :] = torch.softmax(scores, dim=-1).to(torch.bfloat16) @ values
    return output.transpose(1, 2).contiguous(), None
