"""Hostile or careless data files given to ``medsam3 evaluate``, ``segment --start-from`` and ``batch``: nothing
they hold runs as code, inflates beyond what their header declares, or reads outside the data set; each is refused
in one line that says what to do (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medsam3.apps.cli import main


class _WritesAFile:
    """A pickled object whose unpickling would create a file (as a hostile .npz could run any code)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


def _challenge_npz(path: Path, text_prompts) -> Path:
    images = np.full((4, 6, 6), -1000, dtype=np.int16)
    labels = np.zeros((4, 6, 6), dtype=np.uint8)
    labels[1:3, 2:4, 2:4] = 1
    np.savez(path, imgs=images, gts=labels, spacing=np.array([1.0, 1.0, 2.0]), text_prompts=text_prompts)
    return path


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "internal error" not in lines[0] and "Traceback" not in text
    return lines[0]


def test_a_pickled_object_in_an_npz_is_never_run_and_the_user_is_told_to_give_labels(tmp_path, capsys):
    written = tmp_path / "written-by-the-pickle"
    data = tmp_path / "challenge"
    data.mkdir()
    _challenge_npz(data / "case1.npz", np.array(_WritesAFile(written), dtype=object))
    status = main(["evaluate", str(data), "--model", "tiny-random", "--output", str(tmp_path / "out"), "--quiet"])
    line = _one_line(capsys.readouterr().err)
    assert status != 0
    assert not written.exists()
    assert "text_prompts" in line and "--labels" in line


def test_plain_challenge_label_names_are_still_read_from_text_prompts(tmp_path):
    from medsam3.apps.evaluation.datasets import open_dataset

    pickled = _challenge_npz(tmp_path / "pickled.npz", np.array({"1": "lesion", 2: "cyst"}, dtype=object))
    assert [(s.value, s.name) for s in open_dataset(pickled).structures] == [(1, "lesion"), (2, "cyst")]
