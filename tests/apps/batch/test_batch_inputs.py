"""Careless or hostile inputs to ``medsam3 batch`` (issue 18 M-5, L-5, L-6, L-7, L-11): a case named like the
batch's own log, an output folder inside the input folder, a symbolic link that loops, a README beside the images,
a truncated .mha, and a dataset.json pointing outside its data set. None of them ends the batch or leaks a
library's warning; a refusal is one line."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medsam3.apps.cli import main

from batch_backends import oracle_backend_factory


def image(path: Path, value: int = 0) -> Path:
    array = np.full((4, 24, 24), -1000, np.int16)
    array[1:3, 6:18, 6:18] = 1000 + value
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def run_batch(*arguments) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["batch", *map(str, arguments), "--text", "liver"], backend_factory=oracle_backend_factory)
    return code, out.getvalue(), err.getvalue()


def log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "batch-log.jsonl").read_text().splitlines()]


def test_a_case_named_like_the_log_is_renamed_and_the_batch_goes_on(tmp_path):
    image(tmp_path / "in" / "batch-log.jsonl.nrrd")
    image(tmp_path / "in" / "other.nrrd", 1)
    code, stdout, stderr = run_batch(tmp_path / "in", "--output", tmp_path / "out")
    assert code == 0, stdout + stderr
    assert (tmp_path / "out" / "batch-log.jsonl").is_file()
    assert {r["case"]: r["status"] for r in log(tmp_path / "out")} == {"batch-log.jsonl_case": "done",
                                                                        "other": "done"}
    assert (tmp_path / "out" / "batch-log.jsonl_case" / "labelmap.nii.gz").is_file()
    assert run_batch(tmp_path / "in", "--output", tmp_path / "out")[0] == 0  # and every rerun too


@pytest.mark.parametrize("where", ["the input folder", "inside the input folder"])
def test_a_batch_writing_into_its_input_folder_never_segments_its_own_outputs(tmp_path, where):
    folder = tmp_path / "cohort"
    image(folder / "a.nrrd")
    image(folder / "patient2" / "b.nrrd", 1)
    output = folder if where == "the input folder" else folder / "results"
    for _ in range(2):
        code, stdout, stderr = run_batch(folder, "--output", output)
        assert code == 0, stdout + stderr
    runs = log(output)
    assert [r["case"] for r in runs] == ["a", "b", "a", "b"]
    assert [r["status"] for r in runs] == ["done", "done", "skipped", "skipped"]


def test_a_symbolic_link_loop_in_an_input_folder_does_not_end_the_batch(tmp_path):
    folder = tmp_path / "in"
    image(folder / "good.nrrd")
    (folder / "sub").mkdir()
    os.symlink("../sub", folder / "sub" / "loop")  # a folder that contains itself
    os.symlink("self", folder / "self")  # a link to itself
    os.symlink("looping.nii.gz", folder / "looping.nii.gz")  # an image name that loops
    code, stdout, stderr = run_batch(folder, "--output", tmp_path / "out")
    records = {r["case"]: r for r in log(tmp_path / "out")}
    assert records["good"]["status"] == "done"
    assert records["looping"]["status"] == "failed" and "loops" in records["looping"]["error"]
    assert code == 1 and "internal error" not in stderr and "Traceback" not in stderr


def test_library_warnings_do_not_leak_for_a_readme_or_a_truncated_mha(tmp_path, capfd):
    folder = tmp_path / "in"
    image(folder / "good.nrrd")
    (folder / "README").write_text("images from the 2024 study\n")
    data = image(folder / "cut.mha", 1).read_bytes()
    (folder / "cut.mha").write_bytes(data[:len(data) // 2])
    code = main(["batch", str(folder), "--text", "liver", "--output", str(tmp_path / "out")],
                backend_factory=oracle_backend_factory)
    printed = capfd.readouterr()
    assert code == 1
    assert "WARNING" not in printed.err and "GDCM" not in printed.err and "MetaImage" not in printed.err
    assert "WARNING" not in printed.out and "MetaImage" not in printed.out
    records = {r["case"]: r for r in log(tmp_path / "out")}
    assert records["good"]["status"] == "done" and "truncated" in records["cut"]["error"]


@pytest.mark.parametrize("entry", ["/etc/hostname", "../../outside.nii.gz", "./imagesTr/../../outside.nii.gz"])
def test_a_dataset_json_entry_outside_the_data_set_is_refused_in_one_line(tmp_path, capsys, entry):
    image(tmp_path / "outside.nii.gz")
    dataset = tmp_path / "data" / "Task01" / "dataset.json"
    image(dataset.parent / "imagesTr" / "a.nii.gz")
    dataset.write_text(json.dumps({"training": [{"image": "./imagesTr/a.nii.gz"}], "test": [entry]}))
    code = main(["batch", str(dataset), "--text", "liver", "--output", str(tmp_path / "out")],
                backend_factory=oracle_backend_factory)
    error = capsys.readouterr().err.strip()
    assert code != 0 and len(error.splitlines()) == 1
    assert "outside its folder" in error and "internal error" not in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["MSD", "nnU-Net"])
def test_a_labelled_data_set_folder_segments_its_images_not_its_ground_truth(tmp_path, layout):
    """The folder medsam3 evaluate reads (dataset.json, imagesTr/, labelsTr/) given to batch: the images are the
    cases; the label files beside them are not segmented as if they were images."""
    folder = tmp_path / "Task09_Spleen"
    channel = "_0000" if layout == "nnU-Net" else ""
    for case in ("spleen_2", "spleen_3"):
        image(folder / "imagesTr" / f"{case}{channel}.nii.gz")
        image(folder / "labelsTr" / f"{case}.nii.gz", 1)
    (folder / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "spleen"}}))
    code, stdout, stderr = run_batch(folder, "--output", tmp_path / "out")
    assert code == 0, stdout + stderr
    assert sorted(r["case"] for r in log(tmp_path / "out")) == [f"spleen_2{channel}", f"spleen_3{channel}"]
