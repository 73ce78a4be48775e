"""The main-job demo: segment the spleen CT from "spleen" and one click into one folder of results, with the
default model when it can be had and otherwise, said in one line, the tiny random-weight model as a plumbing
check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

import medsam3.apps.demo
from medsam3.apps.demo import DEMO_CLICK_RAS, DEMO_IMAGE, main
from medsam3.errors import ModelAccessError
from medsam3.files.volume_io import read_volume

from cases import load_case
from server_harness import (assert_same_geometry, geometry, mask_colour_pixels, oracle_backend,
                            spleen_ground_truth_nifti)
from placement import dice

RESULT_FILES = {"labelmap.nii.gz", "labelmap.labels.csv", "segmentation.seg.nrrd", "overlay.png", "timing.json"}


def test_demo_click_lies_inside_the_spleen():
    case = load_case("spleen")
    i, j, k = np.round(case.volume.ras_to_ijk_points([DEMO_CLICK_RAS])[0]).astype(int)
    assert case.mask[k, j, i]
    assert DEMO_IMAGE.exists()


def oracle_unless_unavailable(model=None, device=None, server_url=None, api_key=None):
    """The default model "cannot be had"; the tiny model stands in (here the oracle, so masks can be checked)."""
    if model is None:
        raise ModelAccessError("no network and no local weights")
    assert model == "tiny-random"
    return oracle_backend()


def oracle_as_default(model=None, device=None, server_url=None, api_key=None):
    assert model is None
    return oracle_backend()


@pytest.fixture(autouse=True)
def network_looks_reachable(monkeypatch):
    """The loader itself reports "no network" here; the demo's quick probe must not switch this test process to
    offline mode."""
    monkeypatch.setattr(medsam3.apps.demo, "hub_reachable", lambda: True)


@pytest.fixture
def spleen_image(tmp_path):
    return spleen_ground_truth_nifti(tmp_path)


def test_demo_with_the_default_model_writes_every_result(spleen_image, tmp_path, capsys):
    image, _, truth = spleen_image
    output = tmp_path / "demo"
    point = ",".join(map(str, DEMO_CLICK_RAS))

    assert main([str(image), "--point", point, "--output", str(output)], backend_factory=oracle_as_default) == 0

    assert {p.name for p in output.iterdir()} == RESULT_FILES
    summary = json.loads((output / "timing.json").read_text())
    assert summary["plumbing_check"] is False and summary["model"] == "ground-truth-oracle"
    assert set(summary["seconds"]) >= {"read_image", "load_model", "text", "prompts", "write", "overlay"}
    assert dice(read_volume(output / "labelmap.nii.gz").array == 1, truth) >= 0.999
    assert summary["segments"]["spleen"]["voxels"] > 1000
    assert mask_colour_pixels(output / "overlay.png", "spleen") > 100
    printed = capsys.readouterr().out
    assert "spleen:" in printed and "seconds:" in printed and "PLUMBING" not in printed


def test_demo_without_network_or_weights_says_so_in_one_line(spleen_image, tmp_path, capsys):
    image, _, _ = spleen_image
    output = tmp_path / "demo"

    status = main([str(image), "--point", ",".join(map(str, DEMO_CLICK_RAS)), "--output", str(output)],
                  backend_factory=oracle_unless_unavailable)

    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if "No network and no local copy" in line]) == 1
    assert lines[0].startswith("No network and no local copy") and "plumbing check" in lines[0]
    summary = json.loads((output / "timing.json").read_text())
    assert summary["plumbing_check"] is True and "not a segmentation" in summary["note"]
    segmentation = sitk.ReadImage(str(output / "segmentation.seg.nrrd"))
    assert segmentation.GetMetaData("Segment0_Name") == "Spleen (plumbing check)"  # not a terminology name


@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_spleen_ct_with_the_tiny_model(tmp_path, capsys):
    output = tmp_path / "demo"

    assert main([str(DEMO_IMAGE), "--model", "tiny-random", "--output", str(output)]) == 0

    assert {p.name for p in output.iterdir()} == RESULT_FILES
    assert_same_geometry(geometry(output / "labelmap.nii.gz"), geometry(DEMO_IMAGE))
    assert_same_geometry(geometry(output / "segmentation.seg.nrrd"), geometry(DEMO_IMAGE))
    summary = json.loads((output / "timing.json").read_text())
    assert summary["model"] == "tiny-random" and summary["plumbing_check"] is True
    assert summary["prompt"] == {"text": "spleen", "click_ras_mm": list(DEMO_CLICK_RAS)}
    assert list(summary["segments"]) == ["spleen (plumbing check)"]
    assert "PLUMBING CHECK" in capsys.readouterr().out


def test_demo_without_network_asks_the_loader_for_local_weights_only(spleen_image, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(medsam3.apps.demo, "hub_reachable", lambda: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # restored after the test, as is the constant below
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    offline_when_asked = []

    def loader(model=None, device=None, server_url=None, api_key=None):
        offline_when_asked.append(constants.HF_HUB_OFFLINE)
        return oracle_unless_unavailable(model, device, server_url, api_key)

    image, _, _ = spleen_image
    assert main([str(image), "--output", str(tmp_path / "demo"), "--point", "-334.66,-340.23,75"],
                backend_factory=loader) == 0
    assert offline_when_asked[0] is True
    assert capsys.readouterr().out.startswith("No network and no local copy")
