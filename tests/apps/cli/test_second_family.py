"""A second model family through the catalogue (issue 20, model families as plugs): the bright-region stand-in
(``medsam3/model/bright_region``) segments the spleen CT of ../shared/data with ``medsam3 segment --model
bright-region`` and through ``medsam3 serve --model bright-region``; a prompt kind it does not serve is refused in one
line before the image is read or anything is loaded."""

from __future__ import annotations

import os

import numpy as np
from scipy import ndimage

import medsam3.files.volume_io
from medsam3.apps.cli import main
from medsam3.files.volume_io import read_volume

from cases import data_path
from placement import dice
from server_harness import API_KEY, served_model

IMAGE = "ct/spleen_msd_crop/image.nii.gz"
LABEL = "ct/spleen_msd_crop/label_spleen.nii.gz"


def spleen_click() -> tuple[int, int, int]:
    """The voxel (k, j, i) at the spleen's centre on its largest axial slice."""
    truth = read_volume(data_path(LABEL)).array == 1
    k = int(np.argmax(truth.sum(axis=(1, 2))))
    j, i = np.round(ndimage.center_of_mass(truth[k])).astype(int)
    assert truth[k, j, i]
    return k, int(j), int(i)


def bright_component(k: int, j: int, i: int) -> np.ndarray:
    """What the family promises, computed from the voxels alone: the connected voxels above 40 HU around the click
    on its axial slice."""
    labels, _ = ndimage.label(read_volume(data_path(IMAGE)).array[k] > 40)
    return labels == labels[j, i]


def assert_clicked_spleen(output, k, j, i) -> None:
    mask = read_volume(output).array > 0
    truth = read_volume(data_path(LABEL)).array == 1
    assert mask[k, j, i]
    assert not np.delete(mask, k, axis=0).any()  # --slice-only: that slice and no other
    assert dice(mask[k], bright_component(k, j, i)) >= 0.95
    assert dice(mask[k], truth[k]) >= 0.9  # on this slice the bright region under the click is the spleen


def test_the_bright_region_family_segments_the_spleen_ct_through_the_catalogue(tmp_path, capsys):
    k, j, i = spleen_click()
    output = tmp_path / "spleen.nii.gz"
    assert main(["segment", str(data_path(IMAGE)), "--model", "bright-region", "--point", f"{i},{j},{k}", "--ijk",
                 "--slice-only", "-o", str(output)]) == 0
    assert_clicked_spleen(output, k, j, i)


def test_a_prompt_kind_the_family_does_not_serve_is_refused_in_one_line_before_any_work(tmp_path, capsys,
                                                                                         monkeypatch):
    def no_reading(*args, **kwargs):
        raise AssertionError("the image was read before the refusal")

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(medsam3.files.volume_io, "read_volume", no_reading)
    output = tmp_path / "out.nii.gz"
    code = main(["segment", str(data_path(IMAGE)), "--model", "bright-region", "--text", "spleen", "-o", str(output)],
                backend_factory=no_loading)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code != 0 and not output.exists() and not list(tmp_path.iterdir())
    assert len(lines) == 1, lines
    assert "bright-region cannot do text through the volume" in lines[0] and "--model medical-sam3-3d" in lines[0]


def test_the_bright_region_family_served_by_medsam3_serve(tmp_path, capsys):
    k, j, i = spleen_click()
    output = tmp_path / "spleen.nii.gz"
    environment = {**os.environ, "MEDSAM3_API_KEY": API_KEY, "PYTHONDONTWRITEBYTECODE": "1"}
    with served_model(tmp_path, environment, "bright-region") as url:
        assert main(["segment", str(data_path(IMAGE)), "--server", url, "--api-key", API_KEY, "--point",
                     f"{i},{j},{k}", "--ijk", "--slice-only", "-o", str(output)]) == 0
        assert_clicked_spleen(output, k, j, i)
        capsys.readouterr()
        # the server's model refuses what its family does not serve, in one line (a 4xx, not a crash)
        refused = tmp_path / "refused.nii.gz"
        assert main(["segment", str(data_path(IMAGE)), "--server", url, "--api-key", API_KEY, "--text", "spleen",
                     "-o", str(refused)]) != 0
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and "cannot do text through the volume" in lines[0], lines
        assert not refused.exists()
