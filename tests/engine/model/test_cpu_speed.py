"""The CPU warning quotes this machine's whole-volume time: the bench's measured figure when it ran here on this
precision path, else an estimate from the matrix-multiply speed, labelled as one (issue 22)."""

from __future__ import annotations

import re

import pytest

from medsam3.model import cpu_speed
from medsam3.model.cpu_speed import cpu_warning, write_measured


def _no_timing(path):
    raise AssertionError("a measured figure was at hand: nothing should be timed")


def test_a_measured_bench_figure_is_quoted_with_its_date(tmp_path):
    write_measured(tmp_path, "bfloat16", 2, 754.0, 3.4, {"vision_encoding": 3.4})
    text = cpu_warning(tmp_path, "bfloat16", 2, 504, matmul_gflops=_no_timing)
    assert "100-slice CT at 504 px takes about 13 min" in text
    assert "measured by 'medsam3 bench'" in text and "about 3 s" in text  # first click: the slice's encoding


def test_without_a_bench_figure_the_estimate_follows_the_matmul_speed_and_says_it_is_one(tmp_path):
    slow = cpu_warning(tmp_path, "float32", 2, 504, matmul_gflops=lambda path: 50.0)
    fast = cpu_warning(tmp_path, "float32", 2, 504, matmul_gflops=lambda path: 200.0)
    assert "estimated from this CPU's matrix-multiply speed" in slow and "run 'medsam3 bench'" in slow
    assert "(the slices' encoding alone)" in slow
    minutes = [int(re.search(r"takes at least (\d+) min", text).group(1)) for text in (slow, fast)]
    expected = cpu_speed.WHOLE_VOLUME_SLICES * cpu_speed.VIT_GFLOP[504] / (cpu_speed.ESTIMATE_ENCODER_FRACTION * 50)
    assert minutes[0] == round(expected / 60) and minutes[1] == round(expected / 4 / 60)


@pytest.mark.parametrize("other", [dict(path="float32", threads=2), dict(path="bfloat16", threads=1)])
def test_a_figure_measured_on_another_path_or_thread_count_is_not_quoted(tmp_path, other):
    write_measured(tmp_path, other["path"], other["threads"], 754.0, 3.4, {})
    text = cpu_warning(tmp_path, "bfloat16", 2, 504, matmul_gflops=lambda path: 100.0)
    assert "estimated" in text and "13 min" not in text


def test_a_figure_measured_on_another_cpu_is_not_quoted(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_speed, "cpu_name", lambda: "another CPU")
    write_measured(tmp_path, "bfloat16", 2, 754.0, 3.4, {})
    monkeypatch.undo()
    assert "estimated" in cpu_warning(tmp_path, "bfloat16", 2, 504, matmul_gflops=lambda path: 100.0)


def test_a_damaged_figures_file_falls_back_on_the_estimate(tmp_path):
    (tmp_path / cpu_speed.SUMMARY_FILE).write_text("{not json")
    assert "estimated" in cpu_warning(tmp_path, "float32", 2, 504, matmul_gflops=lambda path: 100.0)
    write_measured(tmp_path, "float32", 2, 100.0, 1.0, {})  # and the bench can still write over it
    assert "takes about 100 s" in cpu_warning(tmp_path, "float32", 2, 504, matmul_gflops=_no_timing)


def test_the_loaded_backend_on_the_cpu_shows_this_machines_figure(tmp_path):
    import torch

    from medsam3.transports.model_loading import load_backend

    write_measured(tmp_path, "float32", torch.get_num_threads(), 600.0, 2.5, {})
    backend = load_backend("tiny-random", device="cpu", cache_dir=tmp_path, progress=False, bf16_autocast=False)
    assert any("takes about 10 min" in note and "measured by 'medsam3 bench'" in note for note in backend.info().notes)
