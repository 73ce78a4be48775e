"""Counting a model pass's floating-point work, attention included.

torch's FLOP counter knows the GPU attention kernels but not the CPU one,
``_scaled_dot_product_flash_attention_for_cpu``, which is what SDPA runs on a CPU: without it, every attention
product of the ViT (about a ninth of its work at 504 px) and of the tracker's memory attention (most of a propagated
slice's work) counted as zero, and the bench's speeds and floors read too low. Counted here with torch's own
formula for SDPA (the two products, q k^T and p v).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_flash_attention(query_shape, key_shape, value_shape, *_args, out_shape=None, **_kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, with the CPU flash-attention kernel counted."""
    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
                                           _cpu_flash_attention})
