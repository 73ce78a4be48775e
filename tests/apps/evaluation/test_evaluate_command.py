"""``medsam3 evaluate`` end to end: the pipeline check on the real labelled volumes of ../shared/data (Dice at
click 1 >= 0.95 for compact structures, in all three input formats), a broken geometry making it fail, a
stopped run resuming to the same CSV, the same figures in-process and through a server, and the tiny model
running every protocol on every format."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import medsam3.apps.evaluation.run as evaluation_run
from medsam3.apps.cli import main
from medsam3.geometry.model_frame import ModelFrame
from medsam3.files.volume_io import set_image_geometry

from evaluation_examples import msd_folder, nnunet_folder, npz_folder, pairs_folder
from server_harness import API_KEY, oracle_backend_factory, running_server

FORMATS = {"msd": msd_folder, "nnunet": nnunet_folder, "pairs": pairs_folder, "npz": npz_folder}
RESULT_FILES = {"results.csv", "summary.json", "dice_vs_clicks.png", "dice_by_structure.png", "report.md"}
# Structures of the shared data that are one compact piece, and so must come back whole from one click.
EXPECTED_COMPACT = {"msd": {"spleen"}, "nnunet": {"spleen", "right kidney", "left kidney", "liver"},
                    "pairs": {"tumour"}, "npz": {"lesion"}}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in evaluation_run.TIMING_FIELDS} for row in rows]


@pytest.mark.parametrize("data_format", list(FORMATS))
def test_pipeline_check_on_shared_data_gets_compact_structures_back_from_one_click(data_format, tmp_path, capsys):
    data = FORMATS[data_format](tmp_path)
    output = tmp_path / "check"
    status = main(["evaluate", str(data), "--check-pipeline", "--protocols", "clicks", "--max-clicks", "1",
                   "--output", str(output), "--quiet"])
    printed = capsys.readouterr().out
    with capsys.disabled():  # the figures the closing note reports
        print(f"\n[{data_format}] " + "\n".join(line.strip() for line in printed.splitlines()
                                                 if "pipeline check" in line))
    assert status == 0
    summary = json.loads((output / "summary.json").read_text())
    check = summary["pipeline_check"]
    assert check["passed"] and not check["failures"]
    judged = {r["structure"] for r in check["per_case"] if r["compact"]}
    assert EXPECTED_COMPACT[data_format] <= judged
    assert all(r["dice_click_1"] >= 0.95 for r in check["per_case"] if r["compact"])
    assert RESULT_FILES <= {p.name for p in output.iterdir()}


def test_a_broken_geometry_fails_the_pipeline_check(tmp_path, monkeypatch, capsys):
    """Masks coming back from the model upside down (a flipped row axis) must not go unnoticed."""
    original = ModelFrame.model_grid_to_slice
    monkeypatch.setattr(ModelFrame, "model_grid_to_slice", lambda self, grid: original(self, np.asarray(grid)[::-1]))
    status = main(["evaluate", str(msd_folder(tmp_path)), "--check-pipeline", "--protocols", "clicks",
                   "--max-clicks", "1", "--output", str(tmp_path / "check"), "--quiet"])
    error = capsys.readouterr().err
    assert status == 1
    assert "pipeline check failed" in error and "spleen_2/spleen" in error and len(error.strip().splitlines()) == 1
    summary = json.loads((tmp_path / "check" / "summary.json").read_text())
    assert summary["pipeline_check"]["failures"][0]["dice_click_1"] < 0.8  # the report is written all the same


def test_a_label_with_another_geometry_than_its_image_is_refused(tmp_path, capsys):
    folder = pairs_folder(tmp_path)
    label = sitk.ReadImage(str(folder / "labels" / "breast1.nrrd"))
    (folder / "labels" / "breast1.nrrd").unlink()
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0]) @ np.eye(4)
    flipped[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ np.diag(label.GetSpacing())
    set_image_geometry(label, flipped)
    sitk.WriteImage(label, str(folder / "labels" / "breast1.nrrd"))
    status = main(["evaluate", str(folder), "--check-pipeline", "--protocols", "clicks", "--max-clicks", "1",
                   "--output", str(tmp_path / "out"), "--quiet"])
    error = capsys.readouterr().err
    assert status == 1 and "breast1.nrrd has another origin, spacing or direction" in error and "resample" in error


def test_a_label_holding_the_same_voxels_in_another_order_is_read_onto_the_image(tmp_path):
    """A label written with its axes swapped and flipped (same voxels in space, as when one tool writes LPS and
    another RAS) gives exactly the figures of the label stored like its image."""
    folder = pairs_folder(tmp_path)
    for kind in ("images", "labels"):
        (folder / kind / "brain1.nrrd").unlink()  # the small breast case only
    arguments = ["evaluate", str(folder), "--check-pipeline", "--protocols", "clicks", "--max-clicks", "2",
                 "--quiet", "--output"]
    assert main(arguments + [str(tmp_path / "straight")]) == 0
    label = sitk.ReadImage(str(folder / "labels" / "breast1.nrrd"))
    reordered = sitk.PermuteAxes(sitk.Flip(label, [False, True, True]), [1, 0, 2])
    assert reordered.GetSize() != label.GetSize() and reordered.GetDirection() != label.GetDirection()
    (folder / "labels" / "breast1.nrrd").unlink()
    sitk.WriteImage(reordered, str(folder / "labels" / "breast1.nrrd"))
    assert main(arguments + [str(tmp_path / "reordered")]) == 0
    straight, other = _rows(tmp_path / "straight" / "results.csv"), _rows(tmp_path / "reordered" / "results.csv")
    assert _without_timings(other) == _without_timings(straight)
    assert float(other[0]["dice"]) >= 0.95 and int(other[0]["gt_voxels"]) == int(np.sum(
        sitk.GetArrayFromImage(label) == 1))


# --- resume ------------------------------------------------------------------------------------------------------
def _synthetic_pairs(folder: Path, cases: int = 3) -> Path:
    """Small CTs whose two structures are bright blocks (the image is the label drawn as intensity)."""
    for n in range(cases):
        labels = np.zeros((8, 28, 30), np.uint8)
        labels[1:6, 3 + n:12 + n, 4:13] = 1
        labels[2:7, 15:25, 16:27 - n] = 2
        for kind, array in (("images", np.where(labels > 0, 1000, -1000).astype(np.int16)), ("labels", labels)):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((0.8, 0.8, 2.5))
            (folder / kind).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(image, str(folder / kind / f"case{n}.nii.gz"))
    (folder / "labels.txt").write_text("1 left block\n2 right block\n")
    return folder


def test_a_stopped_run_resumes_to_the_same_csv_as_an_uninterrupted_one(tmp_path, monkeypatch):
    data = _synthetic_pairs(tmp_path / "data", cases=2)
    arguments = ["evaluate", str(data), "--max-clicks", "2", "--quiet"]
    assert main(arguments + ["--output", str(tmp_path / "whole")], oracle_backend_factory) == 0

    evaluated = []
    real = evaluation_run.evaluate_structure

    def stopped_after_three(backend, case, structure, *rest):
        if len(evaluated) == 3:
            raise KeyboardInterrupt  # the user presses Ctrl+C during the last structure
        evaluated.append((case.case_id, structure.name))
        return real(backend, case, structure, *rest)

    monkeypatch.setattr(evaluation_run, "evaluate_structure", stopped_after_three)
    assert main(arguments + ["--output", str(tmp_path / "resumed")], oracle_backend_factory) == 130
    assert not (tmp_path / "resumed" / "results.csv").exists()
    with open(tmp_path / "resumed" / "progress.jsonl", "a") as journal:
        journal.write('{"case": "case1", "label": 2, "rows": [{"case"')  # a line cut off by a kill

    evaluated.clear()
    monkeypatch.setattr(evaluation_run, "evaluate_structure", lambda *a: evaluated.append(a[2].name) or real(*a))
    assert main(arguments + ["--output", str(tmp_path / "resumed")], oracle_backend_factory) == 0
    assert evaluated == ["right block"]  # only what was left
    whole, resumed = _rows(tmp_path / "whole" / "results.csv"), _rows(tmp_path / "resumed" / "results.csv")
    assert len(whole) == 2 * 2 * (1 + 2 + 1)
    assert _without_timings(resumed) == _without_timings(whole)
    assert {r["dice"] for r in whole if r["protocol"] == "clicks"} == {"1.0"}

    status = main(["evaluate", str(data), "--max-clicks", "3", "--quiet", "--output", str(tmp_path / "resumed")],
                  oracle_backend_factory)
    assert status == 1  # other settings in the same folder: refused, nothing overwritten
    assert _rows(tmp_path / "resumed" / "results.csv") == resumed


def test_evaluate_reports_progress_in_the_batchs_lines(tmp_path, capsys):
    """One reporter for the applications: a line per case x structure with the time left, as medsam3 batch."""
    data = _synthetic_pairs(tmp_path / "data", cases=2)
    assert main(["evaluate", str(data), "--max-clicks", "1", "--protocols", "clicks", "--output",
                 str(tmp_path / "out")], oracle_backend_factory) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert len(lines) == 4, lines
    assert re.fullmatch(r"\[1/4\] \S+ (left|right) block: done in \d+\.\d s; 3 left, about \d:\d\d:\d\d to go",
                        lines[0])
    assert re.fullmatch(r"\[4/4\] \S+ (left|right) block: done in \d+\.\d s; 0 left", lines[-1])  # nothing to go


def test_a_server_gives_the_same_figures_as_in_process(tmp_path, capsys):
    data = _synthetic_pairs(tmp_path / "data", cases=1)
    arguments = ["evaluate", str(data), "--max-clicks", "2", "--quiet"]
    assert main(arguments + ["--output", str(tmp_path / "local")], oracle_backend_factory) == 0
    with running_server() as url:
        assert main(arguments + ["--output", str(tmp_path / "remote"), "--server", url, "--api-key", API_KEY],
                    oracle_backend_factory) == 0
    local, remote = _rows(tmp_path / "local" / "results.csv"), _rows(tmp_path / "remote" / "results.csv")
    assert _without_timings(remote) == _without_timings(local)
    assert all(r["encode_seconds"] == "" and float(r["seconds"]) > 0 for r in remote if r["prompt"][:4] != "none")
    assert json.loads((tmp_path / "remote" / "summary.json").read_text())["backend"]["transport"] == "remote"


# --- the tiny model ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_backend_factory(one_torch_thread):
    """The command line's factory, loading the tiny model once for the module."""
    from medsam3.transports.backend_choice import open_backend

    backend = open_backend("tiny-random", "cpu")

    def factory(model=None, device=None, server_url=None, api_key=None):
        assert (model, device, server_url) == ("tiny-random", "cpu", None)
        return backend

    return factory


@pytest.mark.parametrize("data_format", ["msd", "pairs", "npz"])
def test_tiny_model_runs_every_protocol_on_every_format(data_format, tmp_path, tiny_backend_factory):
    data = FORMATS[data_format](tmp_path)
    output = tmp_path / "tiny"
    status = main(["evaluate", str(data), "--model", "tiny-random", "--device", "cpu", "--max-clicks", "2",
                   "--max-cases", "1", "--output", str(output), "--quiet"], tiny_backend_factory)
    assert status == 0
    rows = _rows(output / "results.csv")
    assert [(r["protocol"], r["step"]) for r in rows] == [("text", "1"), ("clicks", "1"), ("clicks", "2"),
                                                         ("box", "1")]
    for row in rows:
        assert row["dice"] != "" and 0.0 <= float(row["dice"]) <= 1.0 and 0.0 <= float(row["nsd"]) <= 1.0
        assert int(row["gt_voxels"]) > 0
        if row["prompt"][:4] != "none":
            assert float(row["seconds"]) > 0 and row["encode_seconds"] != ""
    assert rows[0]["prompt"] == f"text '{rows[0]['structure']}'" and rows[0]["phrase"]
    assert rows[1]["prompt"].startswith("positive click")  # no cell starts like a formula (issue 18 L-3)
    assert RESULT_FILES <= {p.name for p in output.iterdir()}
    summary = json.loads((output / "summary.json").read_text())
    assert summary["backend"]["model"] == "tiny-random" and "pipeline_check" not in summary
    report = (output / "report.md").read_text()
    assert "![dice_vs_clicks.png](dice_vs_clicks.png)" in report and rows[0]["structure"] in report
