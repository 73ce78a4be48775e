"""Which arithmetic the network runs in on this machine, chosen once per model and named on the device line.

Three paths, never a re-implementation of the network:

- **bfloat16** (CUDA, and CPUs that multiply bfloat16 natively: AVX-512 BF16 or AMX). The ViT and the text
  encoder store their matrix-product weights (``nn.Linear``, the patch convolution) in bfloat16 once, so
  bfloat16 autocast no longer re-casts float32 weights on every call; normalisation layers keep float32
  weights, and autocast keeps softmax and normalisation arithmetic in float32 as usual; the cheap rest of the
  network stays float32 (see :func:`apply_precision`). On CUDA this is the GPU path it was (bfloat16 autocast
  over the whole call), minus the per-call weight casts of the two encoders.
- **int8**, for measurement only (``precision="int8"``, as ``medsam3 bench --precision int8`` and the agreement
  measure use it; "auto" never picks it): x86 CPUs with torch's x86 / fbgemm int8 kernels (AVX2 and up). The
  linear layers of the ViT and the text encoder in int8 (weights a quarter of their float32 size, held once;
  activations quantized per call), the rest float32. Not offered to users: on the full-size tracker its masks
  drift past the agreement tolerance (Dice min 0.973, logits 7.8 %; see docs/benchmark.md).
- **float32** everywhere else: CPUs without native bfloat16 (there bfloat16 is emulated and 50-100x slower than
  float32), Apple's MPS, or when asked for explicitly (the reference the agreement tests compare against).

``choose_precision`` takes the CPU's features as an argument so that the fallback choice is testable on any
machine; ``cpu_features`` reads them from torch (and /proc/cpuinfo on Linux).
"""

from __future__ import annotations

import functools
import platform
import sys
import time
import warnings
from dataclasses import dataclass

import torch

from .bfloat16_attention import ATTENTION_NAME, bfloat16_products_attention
from .transformers_patches import (cast_norm_output, keep_in_float32, replace_linear_layer, route_attention,
                                   run_in_bfloat16)

PRECISION_CHOICES = ("auto", "float32", "bfloat16", "int8")
NATIVE_BF16_SPEEDUP = 1.5  # bfloat16 matmul must beat float32 by this much to be worth its rounding


@dataclass(frozen=True)
class CpuFeatures:
    avx512_bf16: bool
    amx_bf16: bool
    operating_system: str  # sys.platform

    @property
    def native_bfloat16(self) -> bool:
        return self.avx512_bf16 or self.amx_bf16

    def describe(self) -> str:
        units = [name for name, present in (("AMX", self.amx_bf16), ("AVX-512 BF16", self.avx512_bf16)) if present]
        return " and ".join(units) if units else "no AVX-512 BF16 or AMX"


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This CPU's bfloat16 units, from torch's own CPU probe, else from the Linux CPU flags."""
    flags: set[str] = set()
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
                for line in cpuinfo:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    probe = getattr(torch, "cpu", None)

    def torch_says(name: str) -> bool:
        function = getattr(probe, name, None)
        try:
            return bool(function()) if function else False
        except Exception:  # a private probe that changed: fall back on the flags
            return False

    return CpuFeatures(avx512_bf16=torch_says("_is_avx512_bf16_supported") or "avx512_bf16" in flags,
                       amx_bf16=torch_says("_is_amx_tile_supported") or "amx_bf16" in flags,
                       operating_system=sys.platform)


@functools.lru_cache(maxsize=1)
def measured_bfloat16_speedup(size: int = 1024, repeats: int = 3) -> float:
    """float32 time / bfloat16 time of a size^3 matmul on this CPU (about 0.1 s where bfloat16 is native). Only
    called when the CPU claims native bfloat16: emulated bfloat16 would take tens of seconds here."""
    def best_seconds(dtype: torch.dtype) -> float:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        torch.matmul(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            times.append(time.perf_counter() - start)
        return min(times)

    return best_seconds(torch.float32) / best_seconds(torch.bfloat16)


@dataclass(frozen=True)
class PrecisionPlan:
    name: str  # "float32" or "bfloat16"
    reason: str  # why this path, for the device line

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.name == "bfloat16" else None

    def describe(self) -> str:
        if self.name == "bfloat16":
            return (f"bfloat16 path (ViT, text encoder and the tracker's memory attention in bfloat16, weights "
                    f"stored once; {self.reason})")
        if self.name == "int8":
            return f"int8 path (linear layers of the ViT and text encoder in int8, the rest float32; {self.reason})"
        return f"float32 path ({self.reason})"


def choose_precision(device: str | torch.device, requested: str | None = "auto",
                     features: CpuFeatures | None = None, speedup=None) -> PrecisionPlan:
    """The arithmetic for a device. ``requested``: "auto", "float32" or "bfloat16". ``features`` / ``speedup``
    (a function returning float32 time / bfloat16 time) default to this machine's."""
    requested = requested or "auto"
    if requested not in PRECISION_CHOICES:
        raise ValueError(f"Unknown precision {requested!r}: use one of {', '.join(PRECISION_CHOICES)}.")
    device_type = torch.device(device).type
    if requested == "float32":
        return PrecisionPlan("float32", "asked for")
    if requested == "int8":
        if device_type != "cpu":
            raise ValueError(f"int8 is a CPU path, not offered on {device_type!r}: use auto.")
        engine = int8_engine()
        if engine is None:
            return PrecisionPlan("float32", "int8 asked for, but this torch has no x86 / fbgemm int8 kernels")
        return PrecisionPlan("int8", f"asked for, {engine} kernels")
    if device_type == "cuda":
        return PrecisionPlan("bfloat16", "CUDA" if requested == "auto" else "asked for")
    if device_type != "cpu":
        if requested == "bfloat16":
            raise ValueError(f"bfloat16 is offered on CUDA and CPUs, not on {device_type!r}: use float32.")
        return PrecisionPlan("float32", f"{device_type} runs float32")
    features = features or cpu_features()
    if requested == "bfloat16":
        note = "" if features.native_bfloat16 else ": emulated on this CPU, much slower than float32"
        return PrecisionPlan("bfloat16", f"asked for{note}")
    if not features.native_bfloat16:
        return PrecisionPlan("float32", f"CPU has {features.describe()}: bfloat16 would be emulated")
    ratio = (speedup or measured_bfloat16_speedup)()
    if ratio < NATIVE_BF16_SPEEDUP:
        return PrecisionPlan("float32", f"CPU has {features.describe()} but bfloat16 matmul ran only {ratio:.1f}x "
                                        "float32 here")
    return PrecisionPlan("bfloat16", f"CPU has {features.describe()}, bfloat16 matmul {ratio:.1f}x float32")


_MATMUL_TYPES = (torch.nn.Linear, torch.nn.Conv2d)


_BFLOAT16_ENCODERS = ("Sam3ViTModel", "CLIPTextModelWithProjection")
_MEMORY_ATTENTION = "Sam3TrackerVideoMemoryAttention"  # the video tracker's: most of a propagated slice's work
_MEMORY_ATTENTION_HEADS = "Sam3TrackerVideoRoPEAttention"  # its self- and cross-attention


def bfloat16_encoders(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The encoders of a loaded SAM 3 class that the bfloat16 path runs in bfloat16: the ViT backbones (the
    work of every slice) and the text encoder (354M parameters, run once per phrase)."""
    return [module for module in model.modules() if type(module).__name__ in _BFLOAT16_ENCODERS]


def memory_attentions(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The video tracker's memory attention (in ``Sam3TrackerVideoModel`` and in ``Sam3VideoModel``'s tracker)."""
    return [module for module in model.modules() if type(module).__name__ == _MEMORY_ATTENTION]


def apply_precision(model: torch.nn.Module, plan: PrecisionPlan, quantized: dict | None = None) -> torch.nn.Module:
    """Prepare a loaded model for the plan, in place; a no-op on the float32 path.

    On the bfloat16 path the ViT backbone (nearly all the arithmetic of a slice) and the text encoder store the
    weights of their matrix products (linear layers, the patch convolution) in bfloat16 once, and run under
    bfloat16 autocast, their outputs handed on in float32; layer norms and embeddings keep float32 weights
    (autocast computes norms in float32; a block's first norm hands its output on in bfloat16, see
    :func:`in_autocast_dtype`). The full model's weights take 1.8 GiB instead of 3.2 GiB. The rest
    (neck, prompt encoder, mask decoder, detector heads: cheap) stays float32: with the whole
    tracker in bfloat16 the agreement measure (:mod:`medsam3.apps.bench.precision_agreement`) drifted far more (Dice down
    to 0.60 against 0.71, both including one discrete switch of SAM's stability fallback). On CUDA the rest
    also runs under autocast, as it did (see :func:`autocast_context`); the Fourier positional encodings of
    prompts keep float32 there (sin/cos of large arguments lose whole radians in bfloat16). The video tracker's
    memory attention (most of a propagated slice's work) is treated as the encoders are, and its attention
    itself multiplies in bfloat16 on the CPU (:mod:`.bfloat16_attention`: torch's CPU attention kernel gains
    nothing from bfloat16 at its head width, two bfloat16 products do). A propagated slice at 504 px: 432 ms ->
    160 ms; the propagation agreement (:mod:`medsam3.apps.bench.propagation_agreement`) moved from 1.58 to 1.63 %
    of the logits' scale, the ViT's bfloat16 being the rest (docs/benchmark.md).

    On the int8 path the same two encoders' linear layers become int8 ones (:func:`quantize_linear_layers`;
    ``quantized`` is the loaded model's register of int8 layers, so that classes sharing a ViT share them)."""
    if plan.name == "int8":
        for encoder in bfloat16_encoders(model):
            quantize_linear_layers(encoder, quantized)
        return model
    if plan.name != "bfloat16":
        return model
    for part in bfloat16_encoders(model) + memory_attentions(model):
        for module in part.modules():
            if isinstance(module, _MATMUL_TYPES):
                module.to(torch.bfloat16)
        run_in_bfloat16(part, in_bfloat16)
        for layer in part.modules():
            if type(layer).__name__ == "Sam3ViTLayer":  # its first norm feeds only the attention's projections
                cast_norm_output(layer.layer_norm1, in_autocast_dtype)
    for module in model.modules():
        if type(module).__name__.endswith(("PositionalEmbedding", "PositionEmbedding")):
            keep_in_float32(module, in_float32)
    route_attention([module for module in model.modules() if type(module).__name__ == _MEMORY_ATTENTION_HEADS],
                    ATTENTION_NAME, bfloat16_products_attention)
    return model


def int8_engine() -> str | None:
    """torch's int8 matmul kernels for x86 CPUs (AVX2 and up) if this build has them, else None."""
    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i686"):
        return None
    engines = torch.backends.quantized.supported_engines
    return next((name for name in ("x86", "fbgemm") if name in engines), None)


def quantize_linear_layers(module: torch.nn.Module, quantized: dict | None = None) -> int:
    """Every ``nn.Linear`` of ``module`` replaced, in place, by torch's dynamically quantized int8 Linear
    (``torch.ao.nn.quantized.dynamic.Linear``: weights int8 with one scale per output channel, stored once;
    activations quantized per call, accumulation in int32, output float32). Returns how many were replaced.

    ``quantized`` (a dict, kept by the caller) makes layers whose int8 weights, scales and bias come out
    identical share one module: classes that load the same ViT then hold its int8 weights once."""
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    engine = int8_engine()
    if engine is None:
        raise RuntimeError("This torch build has no x86 / fbgemm int8 kernels: use the float32 path.")
    torch.backends.quantized.engine = engine
    quantized = {} if quantized is None else quantized
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            key = (tuple(child.weight.shape), float(child.weight.detach().double().sum()),
                   None if child.bias is None else float(child.bias.detach().double().sum()))

            def int8_layer(child, key=key):
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*quantize_per_channel.*deprecated")
                    layer = Int8Linear.from_float(child)
                for held in quantized.get(key, ()):
                    if _same_int8_layer(held, layer):
                        return held
                quantized.setdefault(key, []).append(layer)
                return layer

            replace_linear_layer(parent, name, child, int8_layer)
            replaced += 1
    return replaced


def _same_int8_layer(a, b) -> bool:
    wa, wb = a.weight(), b.weight()
    bias_a, bias_b = a.bias(), b.bias()
    return (wa.shape == wb.shape and torch.equal(wa.int_repr(), wb.int_repr())
            and torch.equal(wa.q_per_channel_scales(), wb.q_per_channel_scales())
            and ((bias_a is None and bias_b is None)
                 or (bias_a is not None and bias_b is not None and torch.equal(bias_a, bias_b))))


def in_bfloat16(forward):
    """An encoder's (or the memory attention's) forward under bfloat16 autocast, its floating-point outputs
    returned in float32."""
    @functools.wraps(forward)
    def run(*args, **kwargs):
        first = next(a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        device_type = first.device.type if first.device.type in ("cuda", "cpu") else "cpu"
        with torch.autocast(device_type, dtype=torch.bfloat16):
            output = forward(*args, **kwargs)
        if isinstance(output, torch.Tensor):  # the memory attention's output
            return output.float() if output.is_floating_point() else output
        for key, value in output.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                output[key] = value.float()
        return output

    return run


def in_autocast_dtype(forward):
    """A norm whose output only matrix products read (a ViT block's first norm: windowing, then the attention's
    q / k / v projections): its output cast once to the autocast dtype, as each product would cast it under
    autocast (three casts of the same tensor otherwise, and the windowing copies twice the bytes). Bit for bit
    the same products; outside autocast the output is unchanged."""
    @functools.wraps(forward)
    def run(hidden_states):
        output = forward(hidden_states)
        device_type = output.device.type if output.device.type in ("cuda", "cpu") else "cpu"
        if torch.is_autocast_enabled(device_type) and output.is_floating_point():
            return output.to(torch.get_autocast_dtype(device_type))
        return output

    return run


def in_float32(forward):
    @functools.wraps(forward)
    def run(*args, **kwargs):
        args = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        kwargs = {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                  for k, v in kwargs.items()}
        device_type = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type if device_type in ("cuda", "cpu") else "cpu", enabled=False):
            return forward(*args, **kwargs)

    return run


def autocast_context(plan: PrecisionPlan, device: torch.device):
    """Autocast around a whole call: on CUDA's bfloat16 path (its GPU path as it was). On CPUs only the ViT
    and the text encoder run in bfloat16 (see :func:`apply_precision`), so the rest needs none."""
    import contextlib

    if plan.autocast_dtype is not None and device.type == "cuda":
        return torch.autocast(device.type, dtype=plan.autocast_dtype)
    return contextlib.nullcontext()


def machine_summary() -> str:
    return f"{platform.system()} {platform.machine()}, {cpu_features().describe()}"
