"""A .seg.nrrd written by the engine (through slicerio) reads back equal: segment names, colours, terminology tags,
voxels and geometry, on a plain and an oblique volume; damaged or missing files give one clear error."""

from __future__ import annotations

import numpy as np
import pytest

from medsam3.errors import VolumeError
from medsam3.files.seg_nrrd import read_seg_nrrd, write_seg_nrrd
from medsam3.files.segment_colours import segment_colour

from cases import VARIANTS, load_case

TUMOUR_CODE = ("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure"
               "~SCT^108369006^Neoplasm~^^~~^^~^^")


def _labels(case):
    labels = np.zeros(case.volume.array.shape, np.uint8)
    labels[case.mask] = 1
    second = np.zeros_like(case.mask)
    second[2:5, 10:30, 20:40] = True
    labels[second & ~case.mask] = 2
    return labels


@pytest.mark.parametrize("variant", ["original", "oblique"])
def test_a_written_seg_nrrd_reads_back_equal(variant, tmp_path):
    case = VARIANTS[variant](load_case("spleen"))
    labels = _labels(case)
    names = ["spleen", "left kidney", "nothing found"]  # the third segment is empty
    path = write_seg_nrrd(tmp_path / "result.seg.nrrd", labels, names, case.volume)

    read = read_seg_nrrd(path)
    assert read.segment_names == tuple(names)
    np.testing.assert_array_equal(read.labels.array, labels)
    np.testing.assert_allclose(read.labels.ijk_to_ras, case.volume.ijk_to_ras, atol=1e-9)
    for index, colour in enumerate(read.colours):
        np.testing.assert_allclose(colour, np.array(segment_colour(index)) / 255, atol=1e-6)


def test_the_same_segments_give_the_same_bytes(tmp_path):
    """No time of writing in the file: a batch on Ray writes the very files a local run writes."""
    case = load_case("spleen")
    first = write_seg_nrrd(tmp_path / "first.seg.nrrd", _labels(case), ["spleen", "box"], case.volume)
    second = write_seg_nrrd(tmp_path / "second.seg.nrrd", _labels(case), ["spleen", "box"], case.volume)
    assert first.read_bytes() == second.read_bytes()
    assert b"(GMT)" not in first.read_bytes()[:2000] and first.read_bytes().startswith(b"NRRD")


def test_colours_and_terminology_are_written_as_given(tmp_path):
    import slicerio

    case = load_case("spleen")
    labels = _labels(case)
    path = write_seg_nrrd(tmp_path / "coded.seg.nrrd", labels, ["spleen", "tumour"], case.volume,
                          colours=[(0.615686, 0.364706, 0.403922), (1.0, 0.0, 0.5)],
                          terminologies=["", TUMOUR_CODE])
    segments = slicerio.read_segmentation(str(path), skip_voxels=True)["segments"]
    assert [s["name"] for s in segments] == ["spleen", "tumour"]
    assert segments[1]["color"] == [1.0, 0.0, 0.5]
    assert segments[1]["terminology"]["type"] == ["SCT", "108369006", "Neoplasm"]
    assert [s["labelValue"] for s in segments] == [1, 2]
    box = np.argwhere(labels == 2)
    assert segments[1]["extent"] == [box[:, 2].min(), box[:, 2].max(), box[:, 1].min(), box[:, 1].max(),
                                     box[:, 0].min(), box[:, 0].max()]


def test_a_missing_or_damaged_seg_nrrd_is_one_clear_error(tmp_path):
    with pytest.raises(VolumeError, match="no such segmentation file"):
        read_seg_nrrd(tmp_path / "missing.seg.nrrd")
    damaged = tmp_path / "damaged.seg.nrrd"
    damaged.write_bytes(b"NRRD0004\ntype: what\n")
    with pytest.raises(VolumeError, match="not a readable Slicer segmentation"):
        read_seg_nrrd(damaged)
