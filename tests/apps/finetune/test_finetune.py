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
from server_harness import API_KEY, served_model
from medsam3.apps.cli import main
from medsam3.files.volume_io import read_volume
from medsam3.training.loop import Trainer
from medsam3.transports.remote_client import RemoteBackend

STEPS = 200
ACCUMULATE = 2
LEARNING_RATE = 2e-3


def run(*arguments) -> int:
    return main([str(a) for a in arguments])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_ct_cases(tmp_path_factory.mktemp("data"), count=5)


@pytest.fixture(scope="module")
def fine_tuned(data, tmp_path_factory):
    """The folder of STEPS steps of fine-tuning on the tiny random model, shared by the tests that use it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as one_torch_thread (a function fixture) does
    try:
        output = tmp_path_factory.mktemp("fine_tuned") / "liver-model"
        assert run("finetune", data, "--output", output, "--base", "tiny-random", "--steps", STEPS, "--accumulate",
                   ACCUMULATE, "--learning-rate", LEARNING_RATE, "--device", "cpu", "--quiet") == 0
    finally:
        torch.set_num_threads(threads)
    return output


def _one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line.strip() and "Warning" not in line and "%|" not in line
             and not line.startswith("  ")]  # library warnings, their source lines and progress bars are not ours
    assert len(lines) == 1 and lines[0].startswith("medsam3: "), error
    return lines[0]


def test_held_out_dice_rises_and_the_folder_segments(data, fine_tuned, tmp_path, capsys, one_torch_thread):
    output = fine_tuned
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


@pytest.mark.slow
def test_serve_loads_the_fine_tuned_folder_and_segments_as_segment_does(data, fine_tuned, tmp_path, capsys,
                                                                        one_torch_thread):
    """`medsam3 serve --model FOLDER` on the fine-tuned folder: text through the server gives, voxel for voxel, the
    mask `medsam3 segment --model FOLDER` gives in-process."""
    held_out = json.loads((fine_tuned / "finetune.json").read_text())["held_out_cases"][0]
    image = data / "images" / f"{held_out}.nii.gz"
    here = tmp_path / "in-process.nii.gz"
    assert run("segment", image, "--model", fine_tuned, "--text", "liver", "--output", here, "--device", "cpu") == 0, \
        capsys.readouterr().err
    environment = {**os.environ, "MEDSAM3_API_KEY": API_KEY, "PYTHONDONTWRITEBYTECODE": "1",
                   "OMP_NUM_THREADS": "1"}  # one thread, as here: the same arithmetic
    served = tmp_path / "served.nii.gz"
    with served_model(tmp_path, environment, fine_tuned) as url:
        assert RemoteBackend(url, API_KEY).info().model == fine_tuned.name  # the folder, not the base model
        assert run("segment", image, "--server", url, "--api-key", API_KEY, "--text", "liver", "--output",
                   served) == 0, capsys.readouterr().err
    local, remote = read_volume(here), read_volume(served)
    truth = read_volume(data / "labels" / f"{held_out}.nii.gz").array == 1
    print(f"liver voxels: in-process {int((local.array > 0).sum())}, served {int((remote.array > 0).sum())}, "
          f"overlap with the truth {int(((remote.array > 0) & truth).sum())}")
    assert ((local.array > 0) & truth).sum() > 0  # the fine-tuned model's liver (the base model finds none)
    np.testing.assert_array_equal(remote.array, local.array)
    np.testing.assert_array_equal(remote.ijk_to_ras, local.ijk_to_ras)
