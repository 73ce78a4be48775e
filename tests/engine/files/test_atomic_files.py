"""Outputs appear whole or not at all."""

import pytest

from medsam3.files.atomic_files import AtomicOutputs


def test_all_outputs_appear_together_with_their_names(tmp_path):
    first, second = tmp_path / "out" / "labelmap.nii.gz", tmp_path / "out" / "segmentation.seg.nrrd"
    with AtomicOutputs() as outputs:
        outputs.path_for(first).write_bytes(b"one")
        assert outputs.path_for(first).name.endswith("labelmap.nii.gz")  # writers still see the extension
        outputs.path_for(second).write_bytes(b"two")
        assert not first.exists() and not second.exists()
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    assert sorted(p.name for p in first.parent.iterdir()) == ["labelmap.nii.gz", "segmentation.seg.nrrd"]


def test_a_failure_leaves_existing_files_untouched_and_no_leftovers(tmp_path):
    first, second = tmp_path / "labelmap.nii.gz", tmp_path / "segmentation.seg.nrrd"
    first.write_bytes(b"old result")
    with pytest.raises(RuntimeError):
        with AtomicOutputs() as outputs:
            outputs.path_for(first).write_bytes(b"new")
            outputs.path_for(second)
            raise RuntimeError("the .seg.nrrd writer failed")
    assert first.read_bytes() == b"old result" and not second.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["labelmap.nii.gz"]


def test_an_output_that_was_never_written_is_an_error_and_nothing_moves(tmp_path):
    first, second = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    with pytest.raises(FileNotFoundError, match="b.nii.gz"):
        with AtomicOutputs() as outputs:
            outputs.path_for(first).write_bytes(b"a")
            outputs.path_for(second)
    assert list(tmp_path.iterdir()) == []
