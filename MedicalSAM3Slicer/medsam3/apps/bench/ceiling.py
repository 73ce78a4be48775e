"""The machine's matrix-multiply ceiling at each precision: the figure every "fraction of matmul" is read against.

The ceiling is the best throughput reached over large square products (2048^2 and 4096^2) and the ViT's own
matrix products at their full row counts (never truncated: fewer rows understate the machine), each product
timed several times and its best run kept (a loaded machine only ever slows a run down). A vision encoder is
matrix products plus cheaper work, so it cannot beat that ceiling; if it ever measures faster, the ceiling was
under-measured (a busy machine during the matmul timing), and the ceiling is raised to the encoder's own figure
with a note saying so. Every fraction printed is therefore at most 1 by construction. The same ceilings give the
floors the bench prints: a click's and a propagated slice's counted work at the machine's best matmul speed.
"""

from __future__ import annotations

import time

import torch

SQUARES = ((2048, 2048, 2048), (4096, 4096, 4096))
TINY_SQUARES = ((256, 256, 256), (512, 512, 512))  # ``medsam3 bench --model tiny``: seconds, not minutes
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def vit_shapes(image_size: int, width: int = 1024, mlp: int = 4736, patch: int = 14, window: int = 24) -> list:
    """(rows, inner, columns) of the ViT's linear layers at an input size, at their full row counts: the MLP and
    the global layers' attention projections run on every patch token; the windowed layers' projections on the
    tokens padded to whole windows."""
    grid = image_size // patch
    tokens = grid * grid
    padded = (-(-grid // window) * window) ** 2
    shapes = {(tokens, width, mlp), (tokens, mlp, width), (tokens, width, 3 * width), (tokens, width, width),
              (padded, width, 3 * width), (padded, width, width)}
    return sorted(shapes, key=lambda shape: (-shape[0], shape))


def time_product(dtype: torch.dtype, shape: tuple[int, int, int], seconds: float = 0.6, best_of: int = 3) -> dict:
    """The best GFLOP/s of (rows x inner) @ (inner x columns) over ``best_of`` runs of at least ``seconds``
    (at least one product each), after a warm-up product."""
    rows, inner, columns = shape
    a, b = torch.randn(rows, inner, dtype=dtype), torch.randn(inner, columns, dtype=dtype)
    out = torch.empty(rows, columns, dtype=dtype)
    torch.matmul(a, b, out=out)
    best = 0.0
    for _ in range(best_of):
        runs, start = 0, time.perf_counter()
        while runs < 1 or time.perf_counter() - start < seconds:
            torch.matmul(a, b, out=out)
            runs += 1
        best = max(best, 2 * rows * inner * columns * runs / (time.perf_counter() - start) / 1e9)
    return {"shape": "x".join(map(str, shape)), "gflops": float(f"{best:.4g}")}


def matmul_ceiling(image_sizes: list[int], tiny: bool = False, seconds: float = 0.6,
                   vit_shape_of=vit_shapes) -> dict:
    """Per precision: every product timed and the ceiling (the best of them). ``tiny``: small squares and the
    tiny ViT's shapes (``vit_shape_of`` gives them), for the bench's own test."""
    squares = TINY_SQUARES if tiny else SQUARES
    shapes = list(dict.fromkeys([*squares, *(s for size in image_sizes for s in vit_shape_of(size))]))
    table = {}
    for name, dtype in PRECISIONS.items():
        products = [time_product(dtype, shape, seconds) for shape in shapes]
        best = max(products, key=lambda product: product["gflops"])
        table[name] = {"products": products, "ceiling_gflops": best["gflops"], "ceiling_shape": best["shape"],
                       "raised_by": None}
    return table


def fraction_of_ceiling(ceiling: dict, precision: str, gflops: float) -> float:
    """``gflops`` over the ceiling of ``precision``; an encoder faster than every timed product raises the ceiling
    to its own figure (noted in ``raised_by``): the timing was under-measured, not the encoder super-human."""
    entry = ceiling[precision]
    if gflops > entry["ceiling_gflops"]:
        entry["ceiling_gflops"], entry["raised_by"] = gflops, "the encoder ran faster than every timed product"
    return round(gflops / entry["ceiling_gflops"], 3)


def format_ceiling(ceiling: dict) -> list[str]:
    lines = [f"{'matmul GFLOP/s (best of 3 runs)':<34}{'float32':>10}  {'bfloat16':>10}"]
    for index, product in enumerate(ceiling["float32"]["products"]):
        other = ceiling["bfloat16"]["products"][index]
        lines.append(f"  {product['shape']:<32}{product['gflops']:>10}  {other['gflops']:>10}")
    lines.append(f"  {'ceiling (best of the above)':<32}{ceiling['float32']['ceiling_gflops']:>10}  "
                 f"{ceiling['bfloat16']['ceiling_gflops']:>10}")
    for name in PRECISIONS:
        if ceiling[name]["raised_by"]:
            lines.append(f"  note: the {name} ceiling was raised: {ceiling[name]['raised_by']} (matmul timing "
                         "under-measured, e.g. a busy machine)")
    return lines


def add_floors(figures: dict, ceiling: dict) -> None:
    """The least time any kernel could take: a click's work at the float32 ceiling (the mask decoder runs float32 on
    every CPU path), the full-memory slice's work at each precision's matmul ceiling."""
    if "click_gflop" in figures:
        figures["click_floor_seconds_float32"] = round(figures["click_gflop"] / ceiling["float32"]["ceiling_gflops"], 4)
    work = figures.get("propagation_gflop_per_slice_full_memory")
    if not isinstance(work, (int, float)):
        return
    for name, entry in ceiling.items():
        figures[f"propagation_floor_seconds_full_memory_{name}"] = round(work / entry["ceiling_gflops"], 4)
