"""Identical weights stored once across the SAM 3 classes loaded from one folder.

transformers loads each class (``Sam3Model``, ``Sam3TrackerModel``, ``Sam3TrackerVideoModel``,
``Sam3VideoModel``) with its own copy of every tensor, although one converted checkpoint gives them the same
ViT (454M parameters), the same text encoder (354M) and, for ``Sam3VideoModel``, the same detector. All four
loaded would hold about 2,600M float32 parameters (9.8 GiB) for about 860M distinct ones. Here a parameter of a
newly loaded class whose values equal (exactly, checked with ``torch.equal``) a parameter already held is
replaced by that one, and the copy is freed. Inference never writes to weights, so sharing them is safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from .transformers_patches import share_parameter


def _fingerprint(tensor: torch.Tensor) -> tuple:
    flat = tensor.detach().reshape(-1)
    return (tuple(tensor.shape), tensor.dtype, tensor.device.type,
            float(flat.double().sum()), float(flat[: min(64, flat.numel())].double().abs().sum()))


class WeightRegistry:
    """Parameters already held, found by value; ``share`` points a new model's equal parameters at them."""

    def __init__(self):
        self._by_fingerprint: dict[tuple, list[torch.nn.Parameter]] = {}
        self.shared_parameters = 0
        self.shared_bytes = 0

    def add(self, model: torch.nn.Module) -> None:
        for parameter in _unique_parameters(model.parameters()):
            self._by_fingerprint.setdefault(_fingerprint(parameter), []).append(parameter)

    def share(self, model: torch.nn.Module) -> int:
        """Replace ``model``'s parameters that equal held ones by the held ones; remember the rest. Returns the
        bytes freed."""
        freed = 0
        replacements: dict[int, torch.nn.Parameter] = {}
        for parameter in _unique_parameters(model.parameters()):
            for held in self._by_fingerprint.get(_fingerprint(parameter), ()):
                if held is not parameter and torch.equal(held, parameter):
                    replacements[id(parameter)] = held
                    freed += parameter.numel() * parameter.element_size()
                    break
        for module in model.modules():
            for name, parameter in list(module._parameters.items()):
                if parameter is not None and id(parameter) in replacements:
                    share_parameter(module, name, replacements[id(parameter)])
        self.shared_parameters += len(replacements)
        self.shared_bytes += freed
        self.add(model)
        return freed


def _unique_parameters(parameters: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    seen: set[int] = set()
    unique = []
    for parameter in parameters:
        if id(parameter) not in seen:
            seen.add(id(parameter))
            unique.append(parameter)
    return unique


def distinct_weight_bytes(models: Iterable[torch.nn.Module]) -> int:
    """Bytes of distinct parameter storage across models (a tensor held by several counts once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for model in models:
        for parameter in model.parameters():
            key = (parameter.untyped_storage().data_ptr(), parameter.storage_offset())
            if key not in seen:
                seen.add(key)
                total += parameter.numel() * parameter.element_size()
    return total


def release_loading_memory(model: torch.nn.Module, weights_folder: str | Path | None = None) -> None:
    """After a class is loaded, converted to its precision path and shared: hold its weights in the process's own
    memory and hand back what loading left behind.

    transformers reads the weights through a memory mapping of the safetensors file, and the mapping stays
    resident after loading (a few stray tensors outside the model keep it open): on the full-size model 6.7 GB of
    file pages beside 1.9 GB of weights on the bfloat16 path. Here every weight is copied into the process's own
    memory (so that the model never reads the mapping again), the mapping's pages are dropped from this process
    (``madvise(MADV_DONTNEED)``: clean file pages, re-read from the file should anything touch them again) and
    ``malloc_trim`` (glibc) returns the freed heap to the system. Linux only; elsewhere the copy alone."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.device.type == "cpu" and not getattr(tensor, "_held_in_own_memory", False):
                tensor.data = tensor.data.clone()
                tensor._held_in_own_memory = True  # a weight shared with a later class is not copied again
    import gc

    gc.collect()
    if weights_folder is not None:
        _drop_mapped_pages(Path(weights_folder))
    _trim_heap()


def _drop_mapped_pages(folder: Path) -> None:
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    files = {str(path.resolve()) for path in folder.glob("*.safetensors")}
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            ranges = [line.split()[0] for line in maps if line.rstrip().split(" ")[-1] in files]
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for address_range in ranges:
        start, end = (int(value, 16) for value in address_range.split("-"))
        libc.madvise(start, end - start, 4)  # MADV_DONTNEED


def _trim_heap() -> None:
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass
