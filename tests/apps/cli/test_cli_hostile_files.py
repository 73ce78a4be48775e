"""Hostile or careless data files given to ``medsam3 evaluate``, ``segment --start-from`` and ``batch``: nothing
they hold runs as code, inflates beyond what their header declares, or reads outside the data set; each is refused
in one line that says what to do (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medsam3.apps.cli import main

from batch_backends import oracle_backend_factory


class _WritesAFile:
    """A pickled object whose unpickling would create a file (as a hostile .npz could run any code)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


def _challenge_npz(path: Path, text_prompts) -> Path:
    images = np.full((4, 6, 6), -1000, dtype=np.int16)
    labels = np.zeros((4, 6, 6), dtype=np.uint8)
    labels[1:3, 2:4, 2:4] = 1
    np.savez(path, imgs=images, gts=labels, spacing=np.array([1.0, 1.0, 2.0]), text_prompts=text_prompts)
    return path


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "internal error" not in lines[0] and "Traceback" not in text
    return lines[0]


def test_a_pickled_object_in_an_npz_is_never_run_and_the_user_is_told_to_give_labels(tmp_path, capsys):
    written = tmp_path / "written-by-the-pickle"
    data = tmp_path / "challenge"
    data.mkdir()
    _challenge_npz(data / "case1.npz", np.array(_WritesAFile(written), dtype=object))
    status = main(["evaluate", str(data), "--model", "tiny-random", "--output", str(tmp_path / "out"), "--quiet"])
    line = _one_line(capsys.readouterr().err)
    assert status != 0
    assert not written.exists()
    assert "text_prompts" in line and "--labels" in line


def test_plain_challenge_label_names_are_still_read_from_text_prompts(tmp_path):
    from medsam3.apps.evaluation.datasets import open_dataset

    pickled = _challenge_npz(tmp_path / "pickled.npz", np.array({"1": "lesion", 2: "cyst"}, dtype=object))
    assert [(s.value, s.name) for s in open_dataset(pickled).structures] == [(1, "lesion"), (2, "cyst")]


# --- --start-from with many segments (M-3) ------------------------------------------------------------------------
def _many_segments(tmp_path: Path, count: int):
    from medsam3.files.seg_nrrd import write_seg_nrrd
    from server_harness import small_volume, write_nifti

    volume = small_volume()
    image = write_nifti(volume, tmp_path / "ct.nii.gz")
    labels = (np.arange(volume.array.size, dtype=np.uint16) % (count + 1)).reshape(volume.array.shape)
    names = [f"structure {n}" for n in range(1, count + 1)]
    start = write_seg_nrrd(tmp_path / "start.seg.nrrd", labels.astype(np.uint8 if count < 256 else np.uint16),
                           names, volume)
    return image, start, labels


def _counting_set_mask(monkeypatch) -> list:
    from medsam3.interaction.session import SegmentationSession

    calls, original = [], SegmentationSession.set_mask
    monkeypatch.setattr(SegmentationSession, "set_mask",
                        lambda self, *a, **k: calls.append(a[0]) or original(self, *a, **k))
    return calls


@pytest.mark.parametrize("prompts", [[], ["--name", "structure 7", "--point", "8,8,1", "--ijk", "--slice-only"]])
def test_many_starting_segments_are_kept_without_one_mask_each(tmp_path, capsys, monkeypatch, prompts):
    """Only the segment the clicks refine becomes a session object (a full-volume mask); the other 39 are written
    back from the file's one labelmap, unchanged."""
    from medsam3.files.seg_nrrd import read_seg_nrrd
    from server_harness import oracle_backend_factory

    image, start, labels = _many_segments(tmp_path, 40)
    seeded = _counting_set_mask(monkeypatch)
    status = main(["segment", str(image), "--start-from", str(start), *prompts, "-o", str(tmp_path / "out"),
                   "--seg-nrrd"], backend_factory=oracle_backend_factory)
    assert status == 0, capsys.readouterr().err
    assert len(seeded) == (1 if prompts else 0)
    result = read_seg_nrrd(tmp_path / "out" / "segmentation.seg.nrrd")
    assert result.segment_names == tuple(f"structure {n}" for n in range(1, 41))
    untouched = labels != 7
    if prompts:
        untouched &= result.labels.array != 7
    np.testing.assert_array_equal(result.labels.array[untouched], labels[untouched])


def test_an_unknown_name_among_many_segments_is_one_short_line(tmp_path, capsys):
    from server_harness import oracle_backend_factory

    image, start, _ = _many_segments(tmp_path, 300)
    status = main(["segment", str(image), "--start-from", str(start), "--name", "liver", "--point", "8,8,1",
                   "--ijk", "-o", str(tmp_path / "out")], backend_factory=oracle_backend_factory)
    line = _one_line(capsys.readouterr().err)
    assert status != 0 and "'liver' is not a segment" in line and "295 more" in line
    assert len(line) < 400 and "structure 299" not in line
    assert not (tmp_path / "out").exists()


def test_an_absurd_number_of_segments_is_refused_before_the_model_loads(tmp_path, capsys):
    from server_harness import oracle_backend_factory

    image, start, _ = _many_segments(tmp_path, 1001)
    status = main(["segment", str(image), "--start-from", str(start), "-o", str(tmp_path / "out")],
                  backend_factory=oracle_backend_factory)
    line = _one_line(capsys.readouterr().err)
    assert status != 0 and "1,001 segments" in line and len(line) < 400


# --- .seg.nrrd label files in evaluate (M-2) ----------------------------------------------------------------------
@pytest.mark.parametrize("names", ["--labels", "from the file"])
def test_an_evaluate_label_file_declaring_a_huge_grid_is_refused_before_it_is_inflated(tmp_path, capsys, names):
    """A .seg.nrrd of 300 kB declaring 1,200^3 voxels (1.7 GB inflated) beside a 4x24x24 image; its label names
    given, or read from it (from its header alone)."""
    import gzip
    import tracemalloc

    import SimpleITK as sitk

    data = tmp_path / "pairs"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 24, 24), -1000, np.int16)), str(data / "images" / "c1.nrrd"))
    header = ("NRRD0004\ntype: unsigned char\ndimension: 3\nspace: left-posterior-superior\nsizes: 1200 1200 1200\n"
              "space directions: (1,0,0) (0,1,0) (0,0,1)\nkinds: domain domain domain\nencoding: gzip\n"
              "space origin: (0,0,0)\nSegment0_ID:=Segment_1\nSegment0_Name:=liver\nSegment0_LabelValue:=1\n"
              "Segment0_Layer:=0\n\n")
    bomb = gzip.compress(bytes(300 << 20), 9)  # the start of the zeros is enough to show nothing is inflated
    (data / "labels" / "c1.seg.nrrd").write_bytes(header.encode() + bomb)
    tracemalloc.start()
    try:
        labels = ["--labels", "1=liver"] if names == "--labels" else []
        main(["evaluate", str(data), *labels, "--output", str(tmp_path / "out"), "--quiet"],
             backend_factory=oracle_backend_factory)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    captured = capsys.readouterr()
    assert "1200x1200x1200 voxels but its image has 2,304" in captured.err + captured.out
    assert "internal error" not in captured.err
    assert peak < 200 << 20
