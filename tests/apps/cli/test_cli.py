"""The `medsam3` command line: segmenting real CTs (NIfTI and DICOM) with the ground-truth oracle in place of the
model, its outputs (labelmap geometry, .seg.nrrd, overlay picture), and one-line errors for every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import medsam3.transports.model_loading
from medsam3.apps.cli import main
from medsam3.files.volume_io import read_volume

from server_harness import (assert_same_geometry, dicom_spleen_mask, geometry, mask_colour_pixels,
                            oracle_backend_factory, spleen_ground_truth_nifti, write_ground_truth_dicom)
from placement import click_in_object, dice


def ras_argument(volume, ijk) -> str:
    return ",".join(f"{v:.3f}" for v in volume.ijk_to_ras_points([ijk])[0])


def run_cli(*arguments) -> int:
    return main([str(a) for a in arguments], backend_factory=oracle_backend_factory)


@pytest.fixture(scope="module")
def spleen(tmp_path_factory):
    return spleen_ground_truth_nifti(tmp_path_factory.mktemp("spleen"))


def test_segment_spleen_ct_from_text_and_a_click(spleen, tmp_path, capsys):
    image, volume, truth = spleen
    click, _ = click_in_object(truth, 2)
    output = tmp_path / "out"

    status = run_cli("segment", image, "--text", "spleen", "--point", ras_argument(volume, click), "--output", output,
                     "--seg-nrrd", "--overlay")

    assert status == 0, capsys.readouterr().err
    labelmap = output / "labelmap.nii.gz"
    assert_same_geometry(geometry(labelmap), geometry(image))
    assert dice(read_volume(labelmap).array == 1, truth) >= 0.999
    segmentation = sitk.ReadImage(str(output / "segmentation.seg.nrrd"))
    # named, coloured and coded by the terminology, as `medsam3 batch` and the Slicer module name it
    assert segmentation.GetMetaData("Segment0_Name") == "Spleen"
    assert "SCT^78961009^Spleen" in segmentation.GetMetaData("Segment0_Tags")
    assert_same_geometry(geometry(output / "segmentation.seg.nrrd"), geometry(image))
    assert dice(sitk.GetArrayFromImage(segmentation) == 1, truth) >= 0.999
    assert mask_colour_pixels(output / "overlay.png", "spleen") > 100
    assert "spleen:" in capsys.readouterr().out


def test_segment_dicom_series_with_a_click(tmp_path, capsys):
    volume, truth = dicom_spleen_mask()
    series = write_ground_truth_dicom(truth, tmp_path / "dicom")
    click, _ = click_in_object(truth, 2)
    labelmap = tmp_path / "spleen.nii.gz"

    status = run_cli("segment", series, "--point", ras_argument(volume, click), "--name", "spleen", "-o", labelmap,
                     "--overlay")

    assert status == 0, capsys.readouterr().err
    assert_same_geometry(geometry(labelmap), geometry(series))
    # 0.99, not 0.999: on 512-voxel slices the model's 252-cell logit grid holds 2 voxels per cell, so the
    # outline is smoothed by about a voxel (measured 0.9946)
    assert dice(read_volume(labelmap).array == 1, truth) >= 0.99
    assert mask_colour_pixels(tmp_path / "spleen.png", "spleen") > 100


def test_slice_only_box_in_voxel_indices_segments_one_slice(spleen, tmp_path, capsys):
    image, _, truth = spleen
    _, expected = click_in_object(truth, 2)
    k_rows, j_rows, i_rows = np.nonzero(expected)
    box = f"{i_rows.min()},{j_rows.min()},{k_rows[0]},{i_rows.max()},{j_rows.max()},{k_rows[0]}"

    status = run_cli("segment", image, "--box", box, "--ijk", "--slice-only", "-o", tmp_path / "box.nii.gz",
                     "--seg-nrrd")

    assert status == 0, capsys.readouterr().err
    result = read_volume(tmp_path / "box.nii.gz").array == 1
    assert dice(result, expected) >= 0.999
    assert set(np.nonzero(result)[0]) == {k_rows[0]}
    assert sitk.ReadImage(str(tmp_path / "box.seg.nrrd")).GetMetaData("Segment0_Name") == "Segment_1"


@pytest.mark.parametrize("arguments, says", [
    (["segment", "{missing}", "--text", "liver", "-o", "{out}"], "does not exist"),
    (["segment", "{corrupt}", "--text", "liver", "-o", "{out}"], "Could not read"),
    (["segment", "{image}", "--point", "1,2", "-o", "{out}"], "3 comma-separated numbers"),
    (["segment", "{image}", "--point", "10000,0,0", "-o", "{out}"], "outside the volume"),
    (["segment", "{image}", "--point", "-1e9,0,0", "-o", "{out}"], "outside the volume"),
    (["segment", "{image}", "-o", "{out}"], "Nothing to segment"),
    (["segment", "{image}", "--text", "liver"], "required"),
    (["segment", "{image}", "--text", "a, b", "--point", "1,2,3", "--ijk", "-o", "{out}"], "one typed target"),
    (["segment", "{image}", "--text", "liver", "--view", "oblique", "-o", "{out}"], "invalid choice"),
    (["segment", "{image}", "--text", "liver", "--server", "http://127.0.0.1:9", "-o", "{out}"], "Cannot reach"),
    (["segment", "{image}", "--text", "liver", "--server", "not a url", "-o", "{out}"], "server"),
    (["segment", "{image}", "--text", "liver", "--server", "http://127.0.0.1:9", "--model", "m", "-o", "{out}"],
     "Leave them out"),
    (["models", "verify", "{missing}.pt"], "does not exist"),
    (["frobnicate"], "invalid choice"),
    (["serve", "--no-api-key", "--host", "0.0.0.0"], "loopback"),
    (["serve", "--api-key", "short"], "too short"),
])
def test_bad_input_gives_one_clear_line(spleen, tmp_path, capsys, arguments, says):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"this is not an image")
    names = {"missing": tmp_path / "missing.nii.gz", "corrupt": corrupt, "image": spleen[0],
             "out": tmp_path / "o.nii.gz"}

    status = run_cli(*[a.format(**names) for a in arguments])

    error = capsys.readouterr().err
    assert status != 0
    assert len(error.strip().splitlines()) == 1, error
    assert says in error
    assert "Traceback" not in error


def test_console_script_reports_errors_without_a_traceback(tmp_path):
    script = Path(sys.executable).with_name("medsam3")
    finished = subprocess.run([str(script), "segment", str(tmp_path / "nothing.nii.gz"), "--text", "liver", "-o",
                               str(tmp_path / "out.nii.gz")], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1
    assert finished.stderr.strip().splitlines() == [finished.stderr.strip()]
    assert "does not exist" in finished.stderr


def test_models_commands_go_through_the_model_resolver(monkeypatch, tmp_path, capsys):
    calls = []

    class Entry:
        source, family, description = "org/medsam3-example", "sam3", "an example model"

    class Resolver:
        def list_models(self):
            return [Entry()]

        def download_model(self, source, cache_dir=None, progress=True):
            calls.append(("download", source, cache_dir, progress))
            return tmp_path / "downloaded"

        def convert_checkpoint(self, pt_path, out_dir=None, dtype="float32", tokenizer_dir=None):
            calls.append(("convert", pt_path, out_dir, dtype, tokenizer_dir))
            return tmp_path / "converted"

    monkeypatch.setitem(sys.modules, "medsam3.model.model_sources", Resolver())
    monkeypatch.setattr(medsam3.transports.model_loading, "verify_model", lambda source, device=None: f"{source} on {device}: ok")
    assert run_cli("models", "list") == 0
    assert run_cli("models", "download", "org/x", "--cache-dir", tmp_path) == 0
    assert run_cli("models", "convert", "sam3.pt", "--dtype", "float16", "--tokenizer", "clip") == 0
    assert run_cli("models", "verify", "tiny-random", "--device", "cpu") == 0
    out = capsys.readouterr().out
    assert "org/medsam3-example\tsam3\tan example model" in out and "tiny-random on cpu: ok" in out
    assert str(tmp_path / "converted") in out
    assert calls == [("download", "org/x", str(tmp_path), True), ("convert", "sam3.pt", None, "float16", "clip")]


def test_serve_takes_its_limits_from_the_flags_and_the_key_from_the_environment(monkeypatch):
    import medsam3.apps.server

    started = {}
    monkeypatch.setenv("MEDSAM3_API_KEY", "key-from-the-environment-0123")
    monkeypatch.setattr(medsam3.apps.server, "run_server", lambda backend, settings, **tls: started.update(
        backend=backend, settings=settings, tls=tls))

    status = run_cli("serve", "--host", "0.0.0.0", "--port", "8123", "--max-upload-mb", "2", "--max-voxels", "1000",
                     "--max-sessions", "3", "--idle-timeout", "5", "--rate", "60")

    assert status == 0
    settings = started["settings"]
    assert (settings.host, settings.port, settings.api_key) == ("0.0.0.0", 8123, "key-from-the-environment-0123")
    assert settings.public_limits() == {"max_upload_bytes": 2 * 1024 * 1024, "max_voxels": 1000, "max_sessions": 3,
                                        "idle_timeout_seconds": 300.0, "requests_per_minute": 60,
                                        "memory_budget_bytes": 8 * 1024**3, "max_phrases": 10,
                                        "max_slice_phrases": 4000}
    assert "key-from-the-environment" not in repr(settings)
    assert started["backend"].info().model == "ground-truth-oracle"


def test_bench_hands_every_argument_to_the_engine_benchmark(monkeypatch):
    received = []

    class Benchmark:
        @staticmethod
        def main(argv):
            received.append(argv)
            return 3

    monkeypatch.setitem(sys.modules, "medsam3.apps.bench.benchmark", Benchmark())
    assert run_cli("bench", "--model", "tiny-random", "--slices", "2") == 3
    assert received == [["--model", "tiny-random", "--slices", "2"]]
