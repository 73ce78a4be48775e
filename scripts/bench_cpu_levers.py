"""CPU levers of issue 9 measured on this machine, on the SAM 3 ViT (full width, fewer layers), random weights.

``--levers bf16_rotary_norm``: the bfloat16 levers of issue 22 (see docs/benchmark.md).

The full ViT has 32 layers, 4 of them global (7, 15, 23, 31); ``--layers 8`` (global at 7) is exactly a quarter
of its work and of its compile time, so figures scale by 4. Each lever is timed against float32 eager in the
same run (ratios within one run: the machine is shared); outputs are compared with float32 eager.

    PYTHONPATH=MedicalSAM3Slicer python scripts/bench_cpu_levers.py --size 504 --layers 8 --levers all
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import time

import torch


def build_vit(image_size: int, layers: int):
    from transformers import Sam3TrackerConfig, Sam3ViTConfig, Sam3ViTModel

    from medsam3.model.sam3.transformers_model import resize_config

    full = resize_config(Sam3TrackerConfig().to_dict(), image_size)["vision_config"]["backbone_config"]
    full.update(num_hidden_layers=layers, global_attn_indexes=[i for i in (7, 15, 23, 31) if i < layers] or
                [layers - 1])
    torch.manual_seed(0)
    return Sam3ViTModel(Sam3ViTConfig(**{k: v for k, v in full.items() if k != "model_type"})).eval()


def timed(function, repeats: int) -> tuple[float, torch.Tensor]:
    times, output = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        output = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), output


def interleaved(lever, baseline, repeats: int) -> tuple[float, float, torch.Tensor]:
    """Median times of the lever and of the baseline, run alternately (the load of a shared machine shifts)."""
    lever_times, baseline_times, output = [], [], None
    for _ in range(repeats):
        start = time.perf_counter()
        output = lever()
        lever_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        baseline()
        baseline_times.append(time.perf_counter() - start)
    return statistics.median(lever_times), statistics.median(baseline_times), output


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=504)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levers", default="all", help="comma list of: compile,int8,mkldnn,threads,bf16_rotary_norm")
    args = parser.parse_args()
    if args.levers == "bf16_rotary_norm":
        return bfloat16_levers(args)
    levers = {"compile", "int8", "mkldnn", "threads"} if args.levers == "all" else set(args.levers.split(","))
    vit = build_vit(args.size, args.layers)
    from medsam3.model.sam3.rotary_tables import cache_rotary_tables

    cache_rotary_tables(vit)
    pixels = torch.randn(1, 3, args.size, args.size)
    run = lambda model: model(pixels).last_hidden_state  # noqa: E731
    print(f"ViT {args.layers} layers at {args.size} px, {torch.get_num_threads()} threads, load {load()}", flush=True)
    with torch.inference_mode():
        run(vit)
        eager, reference = timed(lambda: run(vit), args.repeats)
        scale = float(reference.abs().max())
        print(f"float32 eager: {eager:.2f} s per call (load {load()})", flush=True)

        def report(name, seconds, output, extra="", baseline=None):
            difference = float((output - reference).abs().max())
            base = baseline or eager
            print(f"{name}: {seconds:.2f} s per call against {base:.2f} s eager in alternation, "
                  f"{base / seconds:.2f}x; largest output difference "
                  f"{difference:.3g} ({100 * difference / scale:.2f} % of the largest output){extra} "
                  f"(load {load()})", flush=True)

        if "threads" in levers and torch.get_num_threads() > 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            seconds, output = timed(lambda: run(vit), args.repeats)
            torch.set_num_threads(threads)
            report("1 thread instead of 2", seconds, output, baseline=timed(lambda: run(vit), args.repeats)[0])
        if "mkldnn" in levers:
            with torch.backends.mkldnn.flags(enabled=False):
                run(vit)
                seconds, output = timed(lambda: run(vit), args.repeats)
            report("oneDNN (mkldnn) off", seconds, output, baseline=timed(lambda: run(vit), args.repeats)[0])
        if "int8" in levers:
            from medsam3.model.sam3.precision import quantize_linear_layers

            quantized = copy.deepcopy(vit)
            start = time.perf_counter()
            quantize_linear_layers(quantized)
            convert = time.perf_counter() - start
            float_bytes = sum(p.numel() * p.element_size() for p in vit.parameters())
            int8_bytes = sum(p.numel() * p.element_size() for p in quantized.parameters()) + sum(
                m.weight().numel() + 16 * m.out_features + (4 * m.out_features if m.bias() is not None else 0)
                for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear))
            run(quantized)
            seconds, baseline, output = interleaved(lambda: run(quantized), lambda: run(vit), args.repeats)
            report("int8 dynamic (Linear layers, per-channel weights)", seconds, output,
                   f"; weights {float_bytes / 2**20:.0f} -> {int8_bytes / 2**20:.0f} MiB, converted in {convert:.1f} s",
                   baseline)
            del quantized
            gc.collect()
        if "compile" in levers:
            torch._dynamo.reset()
            compiled = torch.compile(vit)
            start = time.perf_counter()
            run(compiled)
            first = time.perf_counter() - start
            seconds, baseline, output = interleaved(lambda: run(compiled), lambda: run(vit), args.repeats)
            report("torch.compile (Inductor CPU, float32)", seconds, output,
                   f"; first call {first:.0f} s (compile; Inductor's cache "
                   f"{os.environ.get('TORCHINDUCTOR_CACHE_DIR', 'in the temp folder')} may have held kernels)",
                   baseline)


def bfloat16_levers(args) -> None:
    """Issue 22: the bfloat16 ViT as the engine runs it (complex rotary product, first norm cast once) against
    the same ViT with both levers removed, alternating; outputs compared bit for bit and with float32."""
    from transformers.models.sam3 import modeling_sam3

    from medsam3.model.sam3.precision import PrecisionPlan, apply_precision
    from medsam3.model.sam3.rotary_tables import cache_rotary_tables
    from medsam3.model.sam3.transformers_patches import ROTARY_ORIGINALS

    vit = build_vit(args.size, args.layers)
    cache_rotary_tables(vit)
    fast, original = modeling_sam3.apply_rotary_pos_emb_2d, ROTARY_ORIGINALS[modeling_sam3.__name__]
    pixels = torch.randn(1, 3, args.size, args.size)
    with torch.inference_mode():
        modeling_sam3.apply_rotary_pos_emb_2d = original
        reference = vit(pixels).last_hidden_state
        apply_precision(vit, PrecisionPlan("bfloat16", "asked for"))
        norms = [vars(layer.layer_norm1)["forward"] for layer in vit.layers]

        def levers(on: bool):
            modeling_sam3.apply_rotary_pos_emb_2d = fast if on else original
            for layer, forward in zip(vit.layers, norms):
                if on:
                    vars(layer.layer_norm1)["forward"] = forward
                else:
                    vars(layer.layer_norm1).pop("forward", None)

        def run(on: bool):
            levers(on)
            return vit(pixels).last_hidden_state

        without, with_levers = run(False), run(True)
        seconds, baseline, _ = interleaved(lambda: run(True), lambda: run(False), args.repeats)
        levers(True)
    difference = float((with_levers - reference).abs().max())
    print(f"bfloat16 ViT, complex rotary + norm cast: {seconds:.2f} s against {baseline:.2f} s without, "
          f"{baseline / seconds:.2f}x; bit for bit the same: {torch.equal(with_levers, without)}; against float32 "
          f"{difference:.3g} ({100 * difference / float(reference.abs().max()):.2f} % of the largest output) "
          f"(load {load()})", flush=True)


if __name__ == "__main__":
    main()
