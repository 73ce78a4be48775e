"""Damaged or hostile .seg.nrrd files (issue 18 M-2, L-9): the header is read first, voxels are inflated at most to
the size the header declares, and a file off the image's grid, of floating-point labels, or with a label value
outside its segments is refused in one line."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import numpy as np
import pytest

from medsam3.errors import VolumeError
from medsam3.files.seg_nrrd import read_seg_nrrd

from hand_made_seg_nrrd import hand_made as write_hand_made


def hand_made(path, sizes=(4, 5, 6), nrrd_type="unsigned char", payload: bytes | None = None, label_value=1,
              encoding="gzip"):
    """A .seg.nrrd written by hand as a hostile or broken tool might write it: one segment 'liver' holding one
    voxel; ``payload`` (raw voxel bytes, encoded here) replaces the voxels."""
    voxels = None
    if payload is None:
        voxels = np.zeros(sizes, {"unsigned char": np.uint8, "double": np.float64}[nrrd_type])
        voxels[1, 1, 1] = min(label_value, 255)
    elif encoding == "gzip":
        payload = gzip.compress(payload, 6)
    return write_hand_made(path, voxels, segments=(("liver", label_value, 0),), nrrd_type=nrrd_type,
                           encoding=encoding, sizes=sizes, payload=payload)


def test_a_hand_made_file_reads_as_its_one_segment(tmp_path):
    read = read_seg_nrrd(hand_made(tmp_path / "ok.seg.nrrd"), shape_ijk=(4, 5, 6))
    assert read.segment_names == ("liver",)
    assert read.labels.array.shape == (6, 5, 4) and read.labels.array[1, 1, 1] == 1 and read.labels.array.sum() == 1


def test_a_compression_bomb_is_not_inflated_beyond_its_declared_size(tmp_path):
    """A tiny declared grid followed by 300 MB of zeros (a few hundred kB compressed) is refused, and reading it
    never holds more than a few MB."""
    bomb = hand_made(tmp_path / "bomb.seg.nrrd", payload=bytes(300 << 20))
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(VolumeError, match="more voxels than its header declares"):
            read_seg_nrrd(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20


def test_a_declared_grid_off_the_image_is_refused_before_any_voxel_is_inflated(tmp_path):
    big = hand_made(tmp_path / "big.seg.nrrd", sizes=(1500, 1500, 1500), payload=zlib.compress(b""))
    tracemalloc.start()
    try:
        with pytest.raises(VolumeError, match=r"differs from the image's \(4x5x6\)"):
            read_seg_nrrd(big, shape_ijk=(4, 5, 6))
        with pytest.raises(VolumeError, match="impossible size"):
            read_seg_nrrd(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20


@pytest.mark.parametrize("damage, says", [
    ({"nrrd_type": "double"}, "not as whole numbers"),
    ({"label_value": 300}, "label value 300"),
    ({"payload": np.full((6, 5, 4), 7, np.uint8).tobytes()}, "label value 7 that no segment declares"),
    ({"payload": bytes(10)}, "fewer voxels than its header declares"),
])
def test_a_damaged_file_is_refused_in_one_line(tmp_path, damage, says):
    path = hand_made(tmp_path / "damaged.seg.nrrd", **damage)
    with pytest.raises(VolumeError, match=says) as refused:
        read_seg_nrrd(path)
    assert len(str(refused.value).splitlines()) == 1


@pytest.mark.parametrize("name", ["Segmentation.seg.nrrd", "SegmentationOverlapping.seg.nrrd"])
def test_files_saved_by_slicer_read_as_slicerio_reads_them(name):
    """The header-first reader gives the very masks slicerio gives, for a plain and a layered (overlapping) file
    saved by Slicer (slicerio's example data)."""
    from pathlib import Path

    import slicerio

    path = Path(slicerio.__file__).parent / "data" / name
    expected = slicerio.read_segmentation(str(path))
    read = read_seg_nrrd(path)
    assert read.segment_names == tuple(s["name"] for s in expected["segments"])
    for number, segment in enumerate(expected["segments"], start=1):
        mask = slicerio.segment_mask(expected, segment).transpose(2, 1, 0)
        later = np.isin(read.labels.array, np.arange(number + 1, len(expected["segments"]) + 1))
        np.testing.assert_array_equal(read.labels.array[~later] == number, mask[~later])
