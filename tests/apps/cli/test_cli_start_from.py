"""`medsam3 segment --start-from FILE.seg.nrrd`: a run starts from a Slicer segmentation. Every segment of the file
comes back unchanged unless clicks refine it; a file that does not fit the image is refused in one line and nothing
is written. On the real spleen CT, with the ground-truth oracle in place of the model."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest

from medsam3.apps.cli import main
from medsam3.files.seg_nrrd import read_seg_nrrd, write_seg_nrrd
from medsam3.files.volume_io import read_volume
from medsam3.geometry.volume import Volume

from server_harness import API_KEY, oracle_backend_factory, running_server, spleen_ground_truth_nifti
from placement import click_in_object


def run_cli(*arguments) -> int:
    return main([str(a) for a in arguments], backend_factory=oracle_backend_factory)


@pytest.fixture(scope="module")
def spleen(tmp_path_factory):
    """The spleen CT (its ground truth as the image, so the oracle answers it), read back as the command reads it;
    the ground truth; and a click on the slice with the most spleen, with the spleen's region on that slice."""
    image, _, truth = spleen_ground_truth_nifti(tmp_path_factory.mktemp("spleen"))
    click, region = click_in_object(truth, 2)
    return image, read_volume(image), truth, click, region


def drawn_block(truth: np.ndarray) -> np.ndarray:
    """A block "drawn by hand" in a corner, away from the spleen."""
    block = np.zeros_like(truth, dtype=bool)
    block[:6, :12, :12] = True
    assert not (block & truth).any()
    return block


def two_segments(path, volume: Volume, spleen_mask: np.ndarray, block: np.ndarray):
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[spleen_mask] = 1
    labels[block] = 2
    write_seg_nrrd(path, labels, ["spleen", "drawn"], volume)
    return labels


def test_without_prompts_every_segment_is_written_back_unchanged(spleen, tmp_path, capsys):
    image, volume, truth, _, _ = spleen
    labels = two_segments(tmp_path / "start.seg.nrrd", volume, truth, drawn_block(truth))

    status = run_cli("segment", image, "--start-from", tmp_path / "start.seg.nrrd", "-o", tmp_path / "out",
                     "--seg-nrrd")

    assert status == 0, capsys.readouterr().err
    result = read_seg_nrrd(tmp_path / "out" / "segmentation.seg.nrrd")
    assert result.segment_names == ("spleen", "drawn")
    np.testing.assert_array_equal(result.labels.array, labels)
    np.testing.assert_array_equal(read_volume(tmp_path / "out" / "labelmap.nii.gz").array, labels)


@pytest.mark.parametrize("transport", ["in-process", "server"])
def test_a_click_fills_the_slice_the_user_missed_and_keeps_the_rest(spleen, tmp_path, capsys, transport):
    image, volume, truth, click, region = spleen
    k = int(click[2])
    missed_a_slice = truth.copy()
    missed_a_slice[k] = False  # the user drew the spleen everywhere but on this slice
    block = drawn_block(truth)
    two_segments(tmp_path / "start.seg.nrrd", volume, missed_a_slice, block)

    with running_server() if transport == "server" else nullcontext() as url:
        server = ["--server", url, "--api-key", API_KEY] if url else []
        status = run_cli("segment", image, "--start-from", tmp_path / "start.seg.nrrd", "--name", "spleen",
                         "--point", ",".join(f"{v:g}" for v in click), "--ijk", "--slice-only", *server,
                         "-o", tmp_path / "out", "--seg-nrrd")

    assert status == 0, capsys.readouterr().err
    result = read_seg_nrrd(tmp_path / "out" / "segmentation.seg.nrrd")
    assert result.segment_names == ("spleen", "drawn")
    spleen_now = result.labels.array == 1
    i, j = int(click[0]), int(click[1])
    assert spleen_now[k, j, i] and not missed_a_slice[k, j, i]  # the clicked slice now holds the spleen
    assert spleen_now[k].sum() >= 0.9 * region[k].sum()
    others = np.ones(truth.shape[0], bool)
    others[k] = False
    np.testing.assert_array_equal(spleen_now[others], missed_a_slice[others])  # what the user drew is kept
    np.testing.assert_array_equal(result.labels.array == 2, block)  # the other segment is untouched


@pytest.mark.parametrize("problem, says", [
    ("shifted", "differs from the image"),
    ("resized", "differs from the image"),
    ("corrupt", "not a readable Slicer segmentation"),
    ("ambiguous", "--name"),
    ("unknown", "'liver' is not a segment"),
    ("labelmap", ".seg.nrrd"),
])
def test_a_starting_file_that_does_not_fit_is_refused_in_one_line_and_nothing_is_written(spleen, tmp_path, capsys,
                                                                                          problem, says):
    image, volume, truth, click, _ = spleen
    start = tmp_path / "start.seg.nrrd"
    if problem == "shifted":
        moved = volume.ijk_to_ras.copy()
        moved[:3, 3] += 5.0
        two_segments(start, Volume(volume.array, moved), truth, drawn_block(truth))
    elif problem == "resized":
        write_seg_nrrd(start, truth[:-1].astype(np.uint8), ["spleen"], Volume(volume.array[:-1], volume.ijk_to_ras))
    elif problem == "corrupt":
        start.write_bytes(b"NRRD0004\nthis is not a segmentation\n")
    elif problem == "labelmap":
        start = tmp_path / "start.nii.gz"
        start.write_bytes(image.read_bytes())
    else:
        two_segments(start, volume, truth, drawn_block(truth))
    name = ["--name", "liver"] if problem == "unknown" else []
    output = tmp_path / "out"

    status = run_cli("segment", image, "--start-from", start, *name, "--point", ",".join(f"{v:g}" for v in click),
                     "--ijk", "--slice-only", "-o", output, "--seg-nrrd", "--overlay")

    error = capsys.readouterr().err.strip()
    assert status != 0
    assert len(error.splitlines()) == 1, error
    assert says in error and "Traceback" not in error and "internal error" not in error
    assert not output.exists()
