"""A command whose optional part (a pip extra of pyproject.toml) is not installed says what to install in one
line and exits 2, before it loads a model or writes a file; a DICOM SEG that cannot be made without the [dicom]
extra is a note, and the other files are still written. Each run is a fresh Python in which a meta-path finder
makes the extra's packages unimportable, as in an installation without them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cases import data_path
from evaluation_examples import msd_folder
from not_installed import not_installed

ROOT = Path(__file__).resolve().parents[3]
WITHOUT = not_installed('set(sys.argv[1].split(","))') + textwrap.dedent("""
    from medsam3.apps.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def medsam3_without(packages: str, *arguments: str, script: str = WITHOUT) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                   "PYTHONPATH": os.pathsep.join([str(ROOT / "MedicalSAM3Slicer"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", script, packages, *arguments], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("packages, arguments, extra", [
    ("fastapi,starlette,pydantic,uvicorn", ["serve", "--no-api-key"], "server"),
    ("uvicorn", ["serve", "--no-api-key"], "server"),  # imported only when serving: still said before the model
    ("ray", ["batch", "--ray", "--text", "spleen", "--output", "{out}", "{image}"], "ray"),
    ("monai", ["evaluate", "{dataset}", "--output", "{out}"], "evaluation"),
])
def test_a_command_without_its_extra_says_what_to_install_in_one_line(tmp_path, packages, arguments, extra):
    image = data_path("ct/spleen_msd_crop/image.nii.gz")
    values = {"out": str(tmp_path / "out"), "image": str(image), "dataset": str(msd_folder(tmp_path))}
    # a model that does not exist: had the command loaded one before checking, it would say so instead
    run = medsam3_without(packages, *[a.format(**values) for a in arguments], "--model", str(tmp_path / "no-model"))
    command = " ".join(["medsam3", arguments[0]] + (["--ray"] if "--ray" in arguments else []))
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [f'{command} needs {packages.split(",")[0]}, which is not installed: pip install '
                                       f'"medsam3[{extra}]" (in a checkout: pip install -r requirements/{extra}.txt)']
    assert not (tmp_path / "out").exists()


def test_the_web_page_without_its_packages_says_what_to_install_before_loading_a_model(tmp_path):
    """`medsam3 web` replaces its process by `python -m medsam3_web`: its main runs here, in the Python without."""
    run = medsam3_without("trame_slicer", "--model", str(tmp_path / "no-model"),
                          script=WITHOUT.replace("from medsam3.apps.cli import main", "from medsam3_web.app import main"))
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == ["medsam3 web: trame_slicer is not installed: install requirements/web.txt "
                                       "(scripts/setup_env.sh does)"]


def test_a_dicom_seg_without_the_dicom_extra_is_a_note_and_the_labelmap_is_written(tmp_path):
    series = data_path("ct/dcmqi_3slice/ct-3slice")
    run = medsam3_without("highdicom", "segment", str(series), "--model", "tiny-random", "--text", "liver", "-o", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert any(line.startswith("note: no DICOM SEG: A DICOM SEG needs highdicom, which is not installed: pip install "
                               '"medsam3[dicom]"') for line in run.stdout.splitlines()), run.stdout
    assert (tmp_path / "out" / "labelmap.nii.gz").is_file()


def test_finetune_with_lora_without_peft_says_what_to_install_before_reading_data_or_making_a_folder(tmp_path):
    run = medsam3_without("peft", "finetune", str(msd_folder(tmp_path)), "--output", str(tmp_path / "out"),
                          "--train", "lora", "--base", str(tmp_path / "no-model"))
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == ['medsam3 finetune --train lora needs peft, which is not installed: pip install '
                                       '"medsam3[finetune]" (in a checkout: pip install -r requirements/finetune.txt)']
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.training").exists()
