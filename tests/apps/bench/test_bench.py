"""``medsam3 bench`` on the tiny random models: every section prints, every "fraction of the ceiling" it prints is
at most 1, and the loaded model's resident memory is a real growth (measured in a fresh process), not 0 or less.

The tiny run's figures say nothing of the machine (seconds, not speed); what is checked is the bench's own
arithmetic and sections (issue 22: it printed fractions of 1.4 to 2.3 and resident deltas of 0 and -56 MiB)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medsam3.apps.bench.ceiling import format_ceiling, fraction_of_ceiling, vit_shapes

MODULE_DIR = Path(__file__).resolve().parents[3] / "MedicalSAM3Slicer"


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    environment = dict(os.environ, MEDSAM3_CACHE=str(folder / "cache"),
                       PYTHONPATH=os.pathsep.join(filter(None, [str(MODULE_DIR), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "medsam3.apps.cli", "bench", "--model", "tiny", "--threads", "1",
                           "--clicks", "2", "--propagation-slices", "5", "--precision", "float32,bfloat16",
                           "--json", str(folder / "bench.json")],
                          capture_output=True, text=True, env=environment, timeout=1800, cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, json.loads((folder / "bench.json").read_text()), folder


def test_every_section_prints(tiny_bench):
    printed, _, _ = tiny_bench
    for section in ("machine:", "matmul GFLOP/s", "ceiling (best of the above)", "vision encoding per slice",
                    "fraction of ceiling, this path", "click to mask, cached (median)", "propagation per slice, cached",
                    "whole volume, text through 100 slices", "ESTIMATE", "resident growth in a fresh process"):
        assert section in printed, f"{section!r} missing from:\n{printed}"


def test_every_printed_fraction_is_at_most_one(tiny_bench):
    printed, report, _ = tiny_bench
    lines = [line for line in printed.splitlines() if "fraction of" in line]
    assert len(lines) == 2
    values = [float(v) for line in lines for v in re.findall(r"\d+\.\d+|\d+", line.split("ceiling", 1)[1])]
    assert len(values) == 4 and all(0 < v <= 1 for v in values)
    for size in report["sizes"]:
        assert 0 < size["encoder_fraction_of_ceiling_this_path"] <= 1


def test_loaded_model_resident_memory_is_a_real_growth_for_both_paths(tiny_bench):
    _, report, _ = tiny_bench
    paths = {entry["path"]: entry for entry in report["resident"]}
    assert set(paths) == {"float32", "bfloat16"}
    for entry in paths.values():
        assert 0 < entry["detector_and_tracker_mib"] <= entry["all_classes_mib"] < entry["peak_mib"]


def test_propagation_and_clicks_are_timed_with_their_work_and_never_beat_their_floors(tiny_bench):
    """A two-slice figure has one remembered frame; a long propagation has them all (the tiny tracker remembers 3).
    The full-memory slices do more work than the first tracked one; the floors printed are that work, and a
    click's, at the machine's best matmul speed."""
    printed, report, _ = tiny_bench
    assert "the same, full memory" in printed and "at the bfloat16 ceiling" in printed
    for size in report["sizes"]:
        work = size["propagation_gflop_each_slice"]
        assert size["memory_frames"] == 3 and len(work) == size["propagation_slices"] == 5
        assert all(work[n] > work[1] for n in (3, 4))
        assert size["propagation_gflop_per_slice_full_memory"] == work[3] == work[4] > 0
        assert size["propagation_seconds_per_slice_full_memory"] > 0
        for name in ("float32", "bfloat16"):  # the work at the machine's best matmul speed (no time asserted)
            floor = work[3] / report["ceiling"][name]["ceiling_gflops"]
            assert size[f"propagation_floor_seconds_full_memory_{name}"] == round(floor, 4) > 0
        assert size["click_floor_seconds_float32"] == round(
            size["click_gflop"] / report["ceiling"]["float32"]["ceiling_gflops"], 4) > 0


def test_whole_volume_time_is_split_by_where_it_goes(tiny_bench):
    _, report, _ = tiny_bench
    for entry in report["whole_volume"]:
        assert entry["estimate"] and entry["slices"] == 100
        assert set(entry["seconds_per_slice"]) == {"vision_encoding", "detector", "tracker_propagation", "fusion"}
        assert entry["whole_volume_seconds"] >= 100 * entry["seconds_per_slice"]["vision_encoding"] > 0


def test_tiny_figures_are_not_cached_as_this_machines_cpu_speed(tiny_bench):
    _, _, folder = tiny_bench
    assert not (folder / "cache" / "cpu_speed.json").exists()


def test_an_encoder_faster_than_every_timed_product_raises_the_ceiling_and_says_so():
    ceiling = {name: {"products": [{"shape": "8x8x8", "gflops": 10.0}], "ceiling_gflops": 10.0,
                      "ceiling_shape": "8x8x8", "raised_by": None} for name in ("float32", "bfloat16")}
    assert fraction_of_ceiling(ceiling, "bfloat16", 5.0) == 0.5
    assert fraction_of_ceiling(ceiling, "bfloat16", 12.5) == 1.0
    assert fraction_of_ceiling(ceiling, "bfloat16", 5.0) == 0.4  # read against the raised ceiling from then on
    assert any("bfloat16 ceiling was raised" in line for line in format_ceiling(ceiling))
    assert not any("float32 ceiling was raised" in line for line in format_ceiling(ceiling))


def test_the_ceiling_times_the_vits_products_at_their_full_row_counts():
    # 504 px: 36 x 36 patch tokens; windowed layers pad them to 2 x 2 windows of 24 x 24; 1008 px: 72 x 72 tokens
    assert (36 * 36, 1024, 4736) in vit_shapes(504) and (4 * 24 * 24, 1024, 3 * 1024) in vit_shapes(504)
    assert (72 * 72, 4736, 1024) in vit_shapes(1008)
    assert max(rows for rows, _, _ in vit_shapes(1008)) == 72 * 72


def test_the_flop_count_includes_cpu_attention_as_its_two_products():
    """torch's counter alone counts the CPU flash-attention kernel as 0 FLOPs; the bench counts it as the same work
    as the attention written out as products (q k^T and p v, counted by torch's own matmul formula)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from medsam3.apps.bench.flops import flop_counter

    query, key, value = torch.randn(2, 4, 96, 32), torch.randn(2, 4, 160, 32), torch.randn(2, 4, 160, 32)
    with FlopCounterMode(display=False) as plain:
        F.scaled_dot_product_attention(query, key, value)
    with flop_counter() as counted:
        F.scaled_dot_product_attention(query, key, value)
    with FlopCounterMode(display=False) as products:
        torch.softmax(query @ key.transpose(-1, -2) * 32 ** -0.5, -1) @ value
    assert plain.get_total_flops() == 0
    assert counted.get_total_flops() == products.get_total_flops() > 0
