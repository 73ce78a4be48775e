"""The ViT's rotary tables (cos, sin), computed once per input size instead of in every block on every call.

transformers' ``Sam3ViTRotaryEmbedding.forward(x, position_ids)`` turns a layer's fixed position grid into
cos / sin tables each time a layer runs (32 layers, every slice). The tables depend only on the layer's
``position_ids`` buffer (fixed by the window size or, for global layers, the input size) and ``inv_freq``;
here each rotary module's forward is wrapped so that its first answer for a grid is kept and handed back after.
The network's code is not changed: the same function computes the tables, once.
"""

from __future__ import annotations

import functools

import torch

_MARK = "_medsam3_cached_rotary"


def cache_rotary_tables(model: torch.nn.Module) -> int:
    """Wrap every ViT rotary embedding of ``model`` (in place); returns how many were wrapped. Idempotent."""
    wrapped = 0
    for module in model.modules():
        if type(module).__name__ == "Sam3ViTRotaryEmbedding" and not getattr(module, _MARK, False):
            module.forward = _memoised(module, module.forward)
            setattr(module, _MARK, True)
            wrapped += 1
    return wrapped


def _memoised(module: torch.nn.Module, forward):
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
