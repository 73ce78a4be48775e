"""What `medsam3 segment` does with its outputs: `-o` means one thing, options are never abbreviated, every
output path is checked before the model loads, the input and existing files are never overwritten without
--overwrite, and a failure part-way leaves no output at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medsam3.files.outputs
from medsam3.apps.cli import main
from medsam3.files.volume_io import read_volume

from server_harness import oracle_backend_factory, small_volume, write_nifti

# the bright block of small_volume() is at k 1-2, j 4-11, i 4-11; this click is inside it
CLICK = ["--point", "8,8,1", "--ijk", "--slice-only"]


class CountingFactory:
    """The oracle backend factory, counting how often a model was loaded."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *arguments):
        self.calls += 1
        return oracle_backend_factory(*arguments)


@pytest.fixture
def image(tmp_path) -> Path:
    return write_nifti(small_volume(), tmp_path / "ct.nii.gz")


def run(factory, *arguments) -> int:
    return main([str(a) for a in arguments], backend_factory=factory)


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert "internal error" not in error and "Traceback" not in error
    return error


def test_out_is_not_taken_for_output(image, tmp_path, capsys):
    factory = CountingFactory()
    status = run(factory, "segment", image, *CLICK, "--out", tmp_path / "mask.nii.gz")
    assert status == 2
    assert "required: -o/--output" in one_line_error(capsys)
    status = run(factory, "segment", image, *CLICK, "-o", tmp_path / "a.nii.gz", "--out", tmp_path / "mask.nii.gz")
    assert status == 2
    assert "unrecognized arguments: --out" in one_line_error(capsys)
    assert not (tmp_path / "mask.nii.gz").exists() and factory.calls == 0
    # sub-commands do not take abbreviations either
    assert run(factory, "models", "convert", tmp_path / "x.pt", "--out", tmp_path / "c") == 2
    assert "unrecognized arguments: --out" in one_line_error(capsys)


def test_o_is_a_file_with_an_image_extension_and_a_folder_otherwise(image, tmp_path, capsys):
    factory = CountingFactory()
    assert run(factory, "segment", image, *CLICK, "--output", tmp_path / "mask.nrrd", "--seg-nrrd") == 0
    assert read_volume(tmp_path / "mask.nrrd").array[1, 8, 8] == 1
    assert (tmp_path / "mask.seg.nrrd").is_file()
    assert run(factory, "segment", image, *CLICK, "-o", tmp_path / "results") == 0
    assert read_volume(tmp_path / "results" / "labelmap.nii.gz").array[1, 8, 8] == 1


@pytest.mark.parametrize("output, says", [
    ("out.txt", "not an image file name"),
    ("/proc/p.nii.gz", "not writable"),
    ("out.seg.nrrd", "--seg-nrrd"),
    ("{image}", "never overwrites its input"),
    ("{tmp}/sub/../ct.nii.gz", "never overwrites its input"),
])
def test_bad_output_paths_are_refused_in_one_line_before_the_model_loads(image, tmp_path, capsys, output, says):
    factory = CountingFactory()
    before = image.read_bytes()
    (tmp_path / "sub").mkdir()
    status = run(factory, "segment", image, *CLICK, "--overwrite", "-o",
                 output.format(image=image, tmp=tmp_path))
    assert status == 1
    assert says in one_line_error(capsys)
    assert factory.calls == 0
    assert image.read_bytes() == before
    assert not (tmp_path / "out.txt").exists()


def test_existing_output_is_kept_unless_overwrite_is_given(image, tmp_path, capsys):
    factory = CountingFactory()
    labelmap = tmp_path / "mask.nii.gz"
    labelmap.write_bytes(b"an earlier result")
    assert run(factory, "segment", image, *CLICK, "-o", labelmap) == 1
    assert "already exists: pass --overwrite" in one_line_error(capsys)
    assert labelmap.read_bytes() == b"an earlier result" and factory.calls == 0

    assert run(factory, "segment", image, *CLICK, "-o", labelmap, "--overwrite") == 0
    assert read_volume(labelmap).array[1, 8, 8] == 1


def test_a_seg_nrrd_path_that_cannot_be_written_stops_the_run_before_the_labelmap(image, tmp_path, capsys):
    factory = CountingFactory()
    status = run(factory, "segment", image, *CLICK, "-o", tmp_path / "mask.nii.gz", "--seg-nrrd",
                 "/proc/no/mask.seg.nrrd")
    assert status == 1 and "not writable" in one_line_error(capsys)
    assert not (tmp_path / "mask.nii.gz").exists() and factory.calls == 0


def test_a_failing_writer_leaves_no_output_and_earlier_files_intact(image, tmp_path, capsys, monkeypatch):
    def broken_seg_nrrd(*_arguments, **_options):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(medsam3.files.outputs, "write_coded_seg_nrrd", broken_seg_nrrd)
    labelmap, overlay = tmp_path / "mask.nii.gz", tmp_path / "mask.png"
    overlay.write_bytes(b"an earlier picture")
    status = run(CountingFactory(), "segment", image, *CLICK, "-o", labelmap, "--seg-nrrd", "--overlay",
                 "--overwrite")
    assert status == 1 and "No space left on device" in one_line_error(capsys)
    assert not labelmap.exists()
    assert overlay.read_bytes() == b"an earlier picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "mask.png"]  # no temporary files left


def test_write_outputs_refuses_the_input_for_every_caller(image, tmp_path):
    from medsam3.apps.segment_pipeline import OutputPaths, OutputPathError, SegmentOutcome, write_outputs

    volume = read_volume(image)
    outcome = SegmentOutcome(np.zeros(volume.array.shape, np.uint8), [], {})
    with pytest.raises(OutputPathError, match="never overwrites its input"):
        write_outputs(outcome, volume, OutputPaths(image), inputs=[image])
    assert read_volume(image).array.max() > 0
