"""What a rerun of ``medsam3 batch`` trusts (issue 18 M-4): a case's folder is committed whole (a staging folder
renamed onto it), the log records each output's SHA-256, and a rerun redoes a case when its model, its input or
``--redo`` says so, or when its files are missing or no longer the ones the log describes, as after a kill."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medsam3.apps.batch import case_commit
from medsam3.apps.cli import main

from batch_backends import oracle_backend_factory
from cases import data_path

NRRD = "mr/pyradiomics/breast1_image.nrrd"


def run_batch(*arguments) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["batch", *map(str, arguments)], backend_factory=oracle_backend_factory)
    return code, out.getvalue() + err.getvalue()


def last_status(output: Path) -> dict:
    lines = [json.loads(line) for line in (output / "batch-log.jsonl").read_text().splitlines()]
    return lines[-1]


@pytest.fixture()
def done_case(tmp_path):
    """One case (a copy of a real MR) segmented once from one click."""
    image = tmp_path / "in" / "breast.nrrd"
    image.parent.mkdir()
    shutil.copyfile(data_path(NRRD), image)
    prompts = tmp_path / "one.csv"
    prompts.write_text("case,kind,x,y,z,space\nbreast,point,20,60,10,ijk\n")
    output = tmp_path / "out"
    code, text = run_batch(image, "--prompts", prompts, "--output", output)
    assert code == 0, text
    record = last_status(output)
    assert record["status"] == "done" and set(record["output_sha256"]) == set(record["outputs"])
    return image, prompts, output


def _labelmap(output: Path) -> Path:
    return output / "breast" / "labelmap.nii.gz"


CHANGES = {
    "nothing": lambda image, output: [],
    "another model": lambda image, output: ["--model", "another-model"],
    "--redo": lambda image, output: ["--redo"],
    "input changed": lambda image, output: _change_input(image),
    "output deleted": lambda image, output: _labelmap(output).unlink() or [],
    "output from another run": lambda image, output: _other_labelmap(output),
}


def _change_input(image: Path) -> list:
    volume = sitk.ReadImage(str(image))
    volume[0, 0, 0] = volume[0, 0, 0] + 1
    sitk.WriteImage(volume, str(image))
    return []


def _other_labelmap(output: Path) -> list:
    """The labelmap of another run beside this run's .seg.nrrd (as a kill between two file renames left it)."""
    labels = sitk.ReadImage(str(_labelmap(output)))
    sitk.WriteImage(labels + 1, str(_labelmap(output)))
    return []


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_rerun_redoes_a_case_exactly_when_something_it_depends_on_changed(done_case, change):
    image, prompts, output = done_case
    extra = CHANGES[change](image, output)
    code, text = run_batch(image, "--prompts", prompts, "--output", output, *extra)
    assert code == 0, text
    record = last_status(output)
    assert record["status"] == ("skipped" if change == "nothing" else "done")
    for path, sha256 in record["output_sha256"].items():  # the log describes the files on disk
        assert case_commit.file_sha256(Path(path)) == sha256


def test_a_kill_between_the_folder_renames_leaves_a_case_the_rerun_redoes(done_case, monkeypatch):
    image, prompts, output = done_case
    renames, rename = [], os.rename

    def killed_on_second_rename(source, target):
        renames.append((source, target))
        if len(renames) == 2:
            raise KeyboardInterrupt  # the process dies here: the old folder moved aside, the new one not in place
        rename(source, target)

    monkeypatch.setattr(case_commit.os, "rename", killed_on_second_rename)
    code, _ = run_batch(image, "--prompts", prompts, "--output", output, "--redo")
    assert code == 130 and not (output / "breast").exists(), renames
    monkeypatch.undo()

    code, text = run_batch(image, "--prompts", prompts, "--output", output)
    assert code == 0, text
    record = last_status(output)
    assert record["status"] == "done"
    assert sorted(p.name for p in output.iterdir()) == ["batch-log.jsonl", "breast"]  # no leftovers
    assert sorted(p.name for p in (output / "breast").iterdir()) == ["labelmap.labels.csv", "labelmap.nii.gz",
                                                                 "segmentation.seg.nrrd"]
    for path, sha256 in record["output_sha256"].items():
        assert case_commit.file_sha256(Path(path)) == sha256


def test_a_log_line_cut_short_by_a_kill_costs_no_later_record(done_case):
    """The next run's record starts on a line of its own, so a third run trusts it (before, it was glued to the
    cut line, unreadable, and the case was segmented again)."""
    image, prompts, output = done_case
    with open(output / "batch-log.jsonl", "ab") as log:
        log.write(b'{"case": "breast", "status": "do')  # a kill in the middle of a line
    code, text = run_batch(image, "--prompts", prompts, "--output", output, "--model", "another-model")
    assert code == 0 and last_status_of_whole_lines(output)["status"] == "done", text
    code, text = run_batch(image, "--prompts", prompts, "--output", output, "--model", "another-model")
    assert code == 0 and last_status_of_whole_lines(output)["status"] == "skipped", text


def last_status_of_whole_lines(output: Path) -> dict:
    lines = (output / "batch-log.jsonl").read_text().splitlines()
    return json.loads(lines[-1])
