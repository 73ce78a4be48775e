"""Reading .seg.nrrd files (issue 23, the reader's mutants): every way Slicer and NRRD store the voxels reads back
equal, with each segment's name, colour and terminology; every corrupt or foreign file is refused in one line that
names the file and says what to do, word for word."""

from __future__ import annotations

import bz2
import gzip

import numpy as np
import pytest

from medsam3.errors import VolumeError
from medsam3.files.seg_nrrd import read_seg_nrrd, read_segment_names, write_seg_nrrd
from medsam3.geometry.volume import Volume
from hand_made_seg_nrrd import hand_made as write_hand_made

SIZES = (4, 5, 6)  # I, J, K
LEFT_KIDNEY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
               "~SCT^64033007^Kidney~SCT^7771000^Left~~^^~^^")
TUMOUR = ("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure"
          "~SCT^108369006^Neoplasm~^^~~^^~^^")  # no modifier
SAVE_AGAIN = ": save the segmentation again from Slicer (Segmentations > Export to files, .seg.nrrd)."


def labels_kji() -> np.ndarray:
    """Two segments on a (K, J, I) grid: 1 in the first slices, 2 in the last."""
    labels = np.zeros(SIZES[::-1], np.uint8)
    labels[0:2, 1:3, 0:2] = 1
    labels[4:6, 2:5, 1:4] = 2
    return labels


def hand_made(path, voxels_ijk: np.ndarray | None = None, **header):
    """The hand-made file; by default the two segments of :func:`labels_kji`."""
    return write_hand_made(path, labels_kji().T if voxels_ijk is None else voxels_ijk, **header)


@pytest.mark.parametrize("encoding", ["raw", "gzip", "gz", "bzip2", "bz2"])
@pytest.mark.parametrize("nrrd_type, dtype, endian", [
    ("unsigned char", np.uint8, "little"), ("short", np.int16, "big"), ("uint16", np.uint16, "big"),
    ("int", np.int32, "little"), ("unsigned int", np.uint32, "big"), ("signed char", np.int8, "little")])
def test_every_encoding_type_and_byte_order_reads_the_same_labels_and_grid(tmp_path, encoding, nrrd_type, dtype,
                                                                           endian):
    path = hand_made(tmp_path / "x.seg.nrrd", labels_kji().T.astype(dtype), nrrd_type=nrrd_type, encoding=encoding,
                     endian=endian)
    read = read_seg_nrrd(path, shape_ijk=SIZES, voxel_count=int(np.prod(SIZES)))
    np.testing.assert_array_equal(read.labels.array, labels_kji())
    assert read.labels.array.dtype == np.uint8  # label n = segment n: a byte up to 255 segments
    assert read.labels.array.shape == SIZES[::-1]
    # LPS directions (0.5, 0, 0), (0, -2, 0), (0, 0, 3) from (10, 20, 30) are RAS (-0.5, 0, 0), (0, 2, 0), ...
    np.testing.assert_array_equal(read.labels.ijk_to_ras, [[-0.5, 0, 0, -10], [0, 2, 0, -20], [0, 0, 3, 30],
                                                           [0, 0, 0, 1]])
    assert read.segment_names == ("liver", "spleen") and read.labels.name == "x.seg.nrrd"


def test_a_single_slice_and_256_segments_read_back(tmp_path):
    """A one-slice segmentation (an X-ray, one CT slice) is a grid of depth 1; label 256 needs more than a byte."""
    one_slice = hand_made(tmp_path / "one.seg.nrrd", labels_kji()[:1].T.copy())
    np.testing.assert_array_equal(read_seg_nrrd(one_slice, shape_ijk=(4, 5, 1)).labels.array, labels_kji()[:1])
    many = np.arange(1, 257, dtype=np.uint16).reshape(16, 16, 1)
    path = hand_made(tmp_path / "many.seg.nrrd", many, nrrd_type="ushort",
                     segments=[(f"s{n}", n, 0) for n in range(1, 257)])
    read = read_seg_nrrd(path)
    np.testing.assert_array_equal(read.labels.array, many.T)
    assert read.labels.modality == "OT" and len(read.segment_names) == 256 and read.labels.array.dtype == np.uint16


def test_a_file_without_an_endian_line_is_little_endian(tmp_path):
    path = hand_made(tmp_path / "x.seg.nrrd", labels_kji().T.astype(np.uint16), nrrd_type="ushort", endian=None)
    np.testing.assert_array_equal(read_seg_nrrd(path).labels.array, labels_kji())


def test_overlapping_segments_in_layers_read_with_their_own_label_values(tmp_path):
    """Slicer keeps overlapping segments in layers (a 4D file, one label value per layer); the later segment wins
    where they overlap, as in slicerio."""
    layers = np.zeros((2, *SIZES), np.uint8)
    layers[0][0:2, 0:2, 0:2] = 5  # "liver": label 5 in layer 0
    layers[1][1:3, 1:3, 1:3] = 5  # "spleen": label 5 in layer 1 too
    layers[1][3, 4, 5] = 7  # "tip": label 7 in layer 1
    path = hand_made(tmp_path / "layers.seg.nrrd", layers, segments=(("liver", 5, 0), ("spleen", 5, 1),
                                                                     ("tip", 7, 1)))
    read = read_seg_nrrd(path)
    expected = np.zeros(SIZES, np.uint8)
    expected[0:2, 0:2, 0:2] = 1
    expected[1:3, 1:3, 1:3] = 2
    expected[3, 4, 5] = 3
    np.testing.assert_array_equal(read.labels.array, expected.T)
    assert read.segment_names == ("liver", "spleen", "tip")


def test_names_colours_and_terminology_read_back_as_written(tmp_path):
    labels = labels_kji()
    path = write_seg_nrrd(tmp_path / "coded.seg.nrrd", labels, ["left kidney", "mass", "tumour"],
                          Volume(labels.astype(np.int16), np.diag([1.0, 1.0, 2.0, 1.0])),
                          colours=[(0.5, 0.25, 0.125), (1.0, 0.0, 0.5), (0, 0, 1)],
                          terminologies=[LEFT_KIDNEY, "", TUMOUR])
    for read in (read_seg_nrrd(path), read_seg_nrrd(path, shape_ijk=SIZES)):
        assert read.segment_names == ("left kidney", "mass", "tumour")
        assert read.colours == ((0.5, 0.25, 0.125), (1.0, 0.0, 0.5), (0.0, 0.0, 1.0))
        assert read.terminologies == (LEFT_KIDNEY, "", TUMOUR)
    assert read_segment_names(path) == ("left kidney", "mass", "tumour")


def test_a_segment_without_name_colour_label_value_or_layer_gets_slicers_defaults(tmp_path):
    path = hand_made(tmp_path / "bare.seg.nrrd", segments=({"ID": "Segment_7"}, {"Name": "spleen", "LabelValue": 2,
                                                                                  "Color": "0 1 0"}))
    read = read_seg_nrrd(path)
    assert read.segment_names == ("Segment_7", "spleen")
    assert read.colours == ((0.5, 0.5, 0.5), (0.0, 1.0, 0.0))
    assert read.terminologies == ("", "")
    np.testing.assert_array_equal(read.labels.array, labels_kji())  # label value 1 in layer 0 when not given
    assert read_segment_names(path) == ("Segment_7", "spleen")


def test_segment_names_come_from_the_header_alone(tmp_path):
    path = hand_made(tmp_path / "names.seg.nrrd", payload=b"not voxels at all")
    assert read_segment_names(path) == ("liver", "spleen")


def refusal(function, path, **arguments) -> str:
    with pytest.raises(VolumeError) as refused:
        function(path, **arguments)
    return str(refused.value)


def test_no_file_no_nrrd_or_no_segment_is_refused_word_for_word(tmp_path):
    missing = tmp_path / "missing.seg.nrrd"
    assert refusal(read_seg_nrrd, missing) == f"{missing}: no such segmentation file."
    text = tmp_path / "notes.seg.nrrd"
    text.write_text("these are notes\n")
    for function in (read_seg_nrrd, read_segment_names):  # the first line of pynrrd's or slicerio's reason
        said = refusal(function, text)
        assert said.startswith(f"{text} is not a readable Slicer segmentation (.seg.nrrd): ")
        assert said.endswith("Invalid NRRD magic line. Is this an NRRD file?") and "\n" not in said
    none = hand_made(tmp_path / "none.seg.nrrd", segments=())
    assert refusal(read_seg_nrrd, none) == (f"{none} holds no segment: save a segmentation with at least one "
                                            "segment from Slicer.")
    assert refusal(read_segment_names, none) == f"{none} declares 0 segments (1 to 1000 are read){SAVE_AGAIN}"
    no_sizes = hand_made(tmp_path / "no_sizes.seg.nrrd")
    no_sizes.write_bytes(no_sizes.read_bytes().replace(b"sizes: 4 5 6\n", b""))
    assert refusal(read_seg_nrrd, no_sizes).endswith("its header has no 3D or 4D sizes and voxel type.")
    flat = hand_made(tmp_path / "flat.seg.nrrd", np.ones((4, 5), np.uint8), segments=(("liver", 1, 0),))
    assert refusal(read_seg_nrrd, flat) == (f"{flat} is not a readable Slicer segmentation (.seg.nrrd): its header "
                                            "has no 3D or 4D sizes and voxel type.")


def test_too_many_segments_are_refused_before_any_voxel(tmp_path):
    many = hand_made(tmp_path / "many.seg.nrrd", segments=[(f"s{n}", 1, 0) for n in range(1001)], payload=b"")
    assert refusal(read_seg_nrrd, many) == (f"{many} declares 1,001 segments, more than the 1000 medsam3 reads"
                                            f"{SAVE_AGAIN}")
    assert refusal(read_segment_names, many) == f"{many} declares 1,001 segments (1 to 1000 are read){SAVE_AGAIN}"
    most = hand_made(tmp_path / "most.seg.nrrd", (labels_kji() == 1).T.astype(np.uint8),
                     segments=[(f"s{n}", 1, 0) for n in range(1000)])
    assert len(read_segment_names(most)) == 1000 and len(read_seg_nrrd(most).segment_names) == 1000


def test_labels_that_are_no_whole_numbers_or_off_the_image_are_refused_word_for_word(tmp_path):
    floats = hand_made(tmp_path / "f.seg.nrrd", labels_kji().T.astype(np.float32), nrrd_type="float")
    assert refusal(read_seg_nrrd, floats) == f"{floats} stores its labels as float, not as whole numbers{SAVE_AGAIN}"
    wide = hand_made(tmp_path / "w.seg.nrrd", labels_kji().T.astype(np.int64), nrrd_type="int64")
    assert refusal(read_seg_nrrd, wide) == f"{wide} stores its labels as int64, not as whole numbers{SAVE_AGAIN}"
    good = hand_made(tmp_path / "g.seg.nrrd")
    assert refusal(read_seg_nrrd, good, shape_ijk=(4, 6, 5)) == (
        f"{good}: its grid (4x5x6 voxels) differs from the image's (4x6x5): save the segmentation with this image as "
        "its reference geometry.")
    assert refusal(read_seg_nrrd, good, voxel_count=121) == (
        f"{good} has 4x5x6 voxels but its image has 121: resample the segmentation onto the image grid.")
    assert read_seg_nrrd(good, shape_ijk=[4.0, 5.0, 6.0], voxel_count=120).segment_names == ("liver", "spleen")
    layered = hand_made(tmp_path / "l.seg.nrrd", np.zeros((2, *SIZES), np.uint8), segments=(("a", 1, 0), ("b", 1, 1)))
    assert refusal(read_seg_nrrd, layered, shape_ijk=(4, 6, 5)).startswith(  # the grid, not the layers
        f"{layered}: its grid (4x5x6 voxels) differs from the image's (4x6x5)")
    assert refusal(read_seg_nrrd, layered, voxel_count=121).startswith(f"{layered} has 4x5x6 voxels but")
    assert read_seg_nrrd(layered, shape_ijk=SIZES, voxel_count=120).labels.array.shape == SIZES[::-1]


def test_a_reason_without_text_is_named_by_its_kind(tmp_path, monkeypatch):
    import nrrd
    import slicerio

    def fails(*_, **__):
        raise ValueError()

    good = hand_made(tmp_path / "g.seg.nrrd")
    monkeypatch.setattr(slicerio, "read_segmentation", fails)
    assert refusal(read_segment_names, good) == (f"{good} is not a readable Slicer segmentation (.seg.nrrd): "
                                                 "ValueError")
    monkeypatch.setattr(nrrd, "read_header", fails)
    assert refusal(read_seg_nrrd, good) == f"{good} is not a readable Slicer segmentation (.seg.nrrd): ValueError"


def test_impossible_sizes_label_values_and_layers_are_refused_before_any_voxel(tmp_path):
    empty_axis = hand_made(tmp_path / "e.seg.nrrd", sizes=(4, 0, 6), payload=b"")
    assert refusal(read_seg_nrrd, empty_axis) == (f"{empty_axis} declares an impossible size (4 x 0 x 6 voxels)"
                                                  f"{SAVE_AGAIN}")
    huge = hand_made(tmp_path / "h.seg.nrrd", sizes=(2048, 1024, 1025), payload=b"")  # 2 G voxels + 2 M
    assert refusal(read_seg_nrrd, huge) == f"{huge} declares an impossible size (2048 x 1024 x 1025 voxels){SAVE_AGAIN}"
    largest = hand_made(tmp_path / "l.seg.nrrd", sizes=(2048, 1024, 1024), payload=b"")  # 2 G voxels: allowed
    assert "holds fewer voxels than its header declares (2,147,483,648)" in refusal(read_seg_nrrd, largest)
    layers = hand_made(tmp_path / "layers.seg.nrrd", sizes=(3, *SIZES), payload=b"")  # 3 layers, 2 segments
    assert refusal(read_seg_nrrd, layers) == (f"{layers} declares an impossible size (3 x 4 x 5 x 6 voxels)"
                                              f"{SAVE_AGAIN}")
    for segment, says in [(("liver", 0, 0), "label value 0 in layer 0"), (("liver", 256, 0), "label value 256 in "
                           "layer 0"), (("liver", 1, 1), "label value 1 in layer 1"),
                          (("liver", 1, -1), "label value 1 in layer -1")]:
        path = hand_made(tmp_path / "v.seg.nrrd", segments=(segment, ("spleen", 2, 0)), payload=b"")
        assert refusal(read_seg_nrrd, path) == (f"{path} gives segment 'liver' {says}, outside what its unsigned char "
                                                f"voxels in 1 layer(s) can hold{SAVE_AGAIN}")
    nameless = hand_made(tmp_path / "n.seg.nrrd", segments=({"ID": "Segment_1", "LabelValue": 300},), payload=b"")
    assert refusal(read_seg_nrrd, nameless).startswith(f"{nameless} gives segment '?' label value 300 in layer 0")
    top = np.zeros(SIZES, np.uint8)
    top[1, 1, 1] = 255
    top_path = hand_made(tmp_path / "top.seg.nrrd", top, segments=(("liver", 255, 0),))
    assert read_seg_nrrd(top_path).labels.array.sum() == 1  # 255, the largest a uchar holds, is read


@pytest.mark.parametrize("extra, encoding, says", [
    ("data file: other.raw\n", "raw", "raw"), ("datafile: other.raw\n", "raw", "raw"),
    ("line skip: 1\n", "gzip", "gzip"), ("byte skip: 4\n", "gzip", "gzip"), ("", "hex", "hex"), ("", "zrl", "zrl")])
def test_voxels_stored_in_a_way_slicer_does_not_write_are_refused(tmp_path, extra, encoding, says):
    path = hand_made(tmp_path / "odd.seg.nrrd", extra=extra, encoding=encoding, payload=b"")
    assert refusal(read_seg_nrrd, path) == (f"{path} stores its voxels in a way Slicer does not write ({says} "
                                            f"encoding, detached data or skipped bytes){SAVE_AGAIN}")


@pytest.mark.parametrize("encoding", ["raw", "gzip", "bzip2"])
def test_one_voxel_more_or_fewer_than_declared_is_refused(tmp_path, encoding):
    packer = {"gzip": gzip.compress, "bzip2": bz2.compress, "raw": lambda data: data}[encoding]
    voxels = labels_kji().tobytes()
    for payload, says in [(voxels + b"\0", "more"), (voxels[:-1], "fewer")]:
        path = hand_made(tmp_path / "n.seg.nrrd", encoding=encoding, payload=packer(payload))
        assert refusal(read_seg_nrrd, path) == (f"{path} holds {says} voxels than its header declares (120)"
                                                f"{SAVE_AGAIN}")


def test_raw_voxels_that_hold_a_blank_line_and_a_header_without_encoding_read_back(tmp_path):
    """Label 10 is the byte of a line end: the voxels begin after the header's first blank line, not its last.
    A header without an encoding line (pynrrd reads it) holds raw voxels."""
    tens = labels_kji().T * 5  # labels 5 and 10, next to each other along I
    path = hand_made(tmp_path / "tens.seg.nrrd", tens, encoding="raw", segments=(("liver", 5, 0), ("spleen", 10, 0)))
    assert b"\n\n" in path.read_bytes()[path.read_bytes().index(b"\n\n") + 2:]
    np.testing.assert_array_equal(read_seg_nrrd(path).labels.array, labels_kji())
    bare = hand_made(tmp_path / "bare.seg.nrrd", encoding="raw")
    bare.write_bytes(bare.read_bytes().replace(b"encoding: raw\n", b""))
    np.testing.assert_array_equal(read_seg_nrrd(bare).labels.array, labels_kji())


def test_a_bzip2_bomb_is_not_inflated_beyond_its_declared_size(tmp_path):
    import tracemalloc

    bomb = hand_made(tmp_path / "bomb.seg.nrrd", encoding="bzip2", payload=bz2.compress(bytes(100 << 20)))
    tracemalloc.start()
    try:
        assert refusal(read_seg_nrrd, bomb).startswith(f"{bomb} holds more voxels than its header declares")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20


def test_a_file_cut_off_at_the_end_of_its_header_is_refused(tmp_path):
    """A download stopped right after the header: not even the blank line that ends it arrived."""
    path = hand_made(tmp_path / "cut.seg.nrrd", payload=b"")
    path.write_bytes(path.read_bytes().rstrip(b"\n") + b"\n")
    assert refusal(read_seg_nrrd, path) == f"{path} holds fewer voxels than its header declares (120){SAVE_AGAIN}"


@pytest.mark.parametrize("encoding", ["gzip", "bzip2"])
def test_damaged_compressed_voxels_are_refused_in_one_line(tmp_path, encoding):
    packed = {"gzip": gzip.compress, "bzip2": bz2.compress}[encoding](labels_kji().tobytes())
    path = hand_made(tmp_path / "d.seg.nrrd", encoding=encoding, payload=packed[:10] + b"\xff" * 20 + packed[30:])
    said = refusal(read_seg_nrrd, path)
    assert said.startswith(f"{path} has damaged compressed voxels (") and said.endswith(f"){SAVE_AGAIN}")
    assert "\n" not in said


def test_a_label_value_no_segment_declares_is_refused_naming_the_first_one(tmp_path):
    voxels = labels_kji().T.copy()
    voxels[3, 4, 5] = 9  # in the last slice only
    voxels[0, 0, 5] = 8
    path = hand_made(tmp_path / "s.seg.nrrd", voxels)
    assert refusal(read_seg_nrrd, path) == f"{path} has voxels of label value 8 that no segment declares{SAVE_AGAIN}"
    voxels = labels_kji().T.copy()
    voxels[3, 1, 2] = 6  # only in the last row of I
    path = hand_made(tmp_path / "r.seg.nrrd", voxels)
    assert refusal(read_seg_nrrd, path) == f"{path} has voxels of label value 6 that no segment declares{SAVE_AGAIN}"
    layers = np.zeros((2, *SIZES), np.uint8)
    layers[1][2, 2, 2] = 1  # label 1 is declared in layer 0 only
    path = hand_made(tmp_path / "l.seg.nrrd", layers, segments=(("liver", 1, 0), ("spleen", 2, 1)))
    assert refusal(read_seg_nrrd, path) == f"{path} has voxels of label value 1 that no segment declares{SAVE_AGAIN}"
