"""``medsam3 finetune`` end to end on the CPU with the tiny random Sam3Model and CT slices from ../shared/data: the
held-out Dice rises, the output folder segments through ``medsam3 segment``, Ctrl+C stops after a checkpoint and
--resume finishes the same run, and bad input gets one line with nothing written."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

import medsam3.apps.finetune.command as finetune_command
from finetune_data import write_ct_cases
from medsam3.apps.cli import main
from medsam3.files.volume_io import read_volume
from medsam3.training.loop import Trainer

STEPS = 200
ACCUMULATE = 2
LEARNING_RATE = 2e-3


def run(*arguments) -> int:
    return main([str(a) for a in arguments])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_ct_cases(tmp_path_factory.mktemp("data"), count=5)


def _one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line.strip() and "Warning" not in line and "%|" not in line
             and not line.startswith("  ")]  # library warnings, their source lines and progress bars are not ours
    assert len(lines) == 1 and lines[0].startswith("medsam3: "), error
    return lines[0]


def test_held_out_dice_rises_and_the_folder_segments(data, tmp_path, capsys, one_torch_thread):
    output = tmp_path / "liver-model"
    assert run("finetune", data, "--output", output, "--base", "tiny-random", "--steps", STEPS, "--accumulate", ACCUMULATE, "--learning-rate",
               LEARNING_RATE, "--device", "cpu", "--quiet") == 0, capsys.readouterr().err
    record = json.loads((output / "finetune.json").read_text())
    before, after = record["held_out_dice_before"], record["held_out_dice_after"]
    print(f"held-out slice Dice before {before}, after {after}; text protocol before "
          f"{record['evaluation_text_dice_before']}, after {record['evaluation_text_dice_after']}")
    print(f"{record['seconds_per_step']} s per step, peak resident memory {record['peak_resident_mb']} MB")
    assert record["held_out_cases"] and not set(record["held_out_cases"]) & set(record["training_cases"])
    for figure in ("engine", "best_instance"):  # as the engine segments text on a slice; the best instance
        mean_before = np.mean([figures[figure] for figures in before.values()])
        mean_after = np.mean([figures[figure] for figures in after.values()])
        print(f"mean held-out {figure} Dice: {mean_before:.3f} before, {mean_after:.3f} after")
        assert mean_after >= mean_before + 0.3, figure
    report = (output / "report.md").read_text()
    assert "| liver |" in report and "medsam3 evaluate --protocols text" in report
    card = (output / "README.md").read_text()
    assert "tiny-random" in card and f"| steps | {STEPS}" in card and "licence" in card

    held_out = record["held_out_cases"][0]
    segmented = tmp_path / "liver.nii.gz"
    assert run("segment", data / "images" / f"{held_out}.nii.gz", "--model", output, "--text", "liver",
               "--output", segmented, "--device", "cpu") == 0, capsys.readouterr().err
    mask = read_volume(segmented).array > 0
    truth = read_volume(data / "labels" / f"{held_out}.nii.gz").array == 1
    assert mask.shape == truth.shape
    print(f"medsam3 segment with the fine-tuned folder: liver Dice "
          f"{2 * (mask & truth).sum() / max(1, mask.sum() + truth.sum()):.3f}")
    assert (mask & truth).sum() > 0  # it finds liver where the base model found nothing


def test_ctrl_c_stops_after_a_checkpoint_and_resume_finishes_the_same_run(data, tmp_path, capsys, monkeypatch,
                                                                         one_torch_thread):
    common = ("--base", "tiny-random", "--steps", 4, "--checkpoint-every", 3, "--holdout", 0, "--device", "cpu",
              "--quiet", "--learning-rate", LEARNING_RATE)
    assert run("finetune", data, "--output", tmp_path / "whole", *common) == 0
    whole = json.loads((tmp_path / "whole" / "finetune.json").read_text())["losses"]

    train_step = Trainer.train_step

    def pressing_ctrl_c_in_step_2(trainer):
        loss = train_step(trainer)
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(Trainer, "train_step", pressing_ctrl_c_in_step_2)
    output = tmp_path / "stopped"
    assert run("finetune", data, "--output", output, *common) == 1
    assert "--resume" in capsys.readouterr().err
    assert not output.exists() and (tmp_path / "stopped.training" / "checkpoint.pt").is_file()
    monkeypatch.setattr(Trainer, "train_step", train_step)

    assert run("finetune", data, "--output", output, *common, "--resume") == 0, capsys.readouterr().err
    resumed = json.loads((output / "finetune.json").read_text())["losses"]
    print(f"uninterrupted {whole}\nstopped at 2 {resumed}")
    assert resumed == whole
    assert not (tmp_path / "stopped.training").exists()  # the finished run leaves no training state behind


def _bad_data(tmp_path, kind: str, data):
    names = {"no labels": {"0": "background"}, "a name that maps to no voxel": {"1": "liver", "7": "pancreas"},
             "a name that maps to nothing": {"1": "liver", "2": "42"}}
    if kind in names:
        return write_ct_cases(tmp_path / "data", count=3, names=names[kind])
    return write_ct_cases(tmp_path / "data", count=1) if kind == "one case" else data


@pytest.mark.parametrize("kind", ["no labels", "a name that maps to no voxel", "a name that maps to nothing",
                                  "one case", "an existing output folder"])
def test_bad_input_gets_one_line_and_nothing_is_written(data, tmp_path, capsys, kind):
    folder = _bad_data(tmp_path, kind, data)
    output = tmp_path / "model"
    if kind == "an existing output folder":
        output.mkdir()
        (output / "mine.txt").write_text("keep me")
    assert run("finetune", folder, "--output", output, "--base", "tiny-random", "--steps", 2, "--device",
               "cpu") == 1
    error = _one_line_error(capsys)
    print(f"{kind}: {error}")
    expected = {"no labels": "names no label", "a name that maps to no voxel": "'pancreas' maps to no voxel",
                "a name that maps to nothing": "maps to no structure name", "one case": "at least one more case",
                "an existing output folder": "already exists"}[kind]
    assert expected in error
    if kind == "an existing output folder":
        assert [p.name for p in output.iterdir()] == ["mine.txt"] and (output / "mine.txt").read_text() == "keep me"
    else:
        assert not output.exists()
    assert not (tmp_path / "model.training").exists()


def test_a_full_size_model_on_a_cpu_is_refused_with_the_measured_step_time(data, tmp_path, capsys, monkeypatch,
                                                                          one_torch_thread):
    monkeypatch.setattr(finetune_command, "FULL_SIZE_PARAMETERS", 0)  # the tiny model stands in for a full-size one
    output = tmp_path / "model"
    assert run("finetune", data, "--output", output, "--base", "tiny-random", "--device", "cpu") == 1
    error = _one_line_error(capsys)
    assert "One training step of this full-size model took" in error and "--force" in error
    assert not output.exists() and not (tmp_path / "model.training").exists()
