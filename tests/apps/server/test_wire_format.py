"""The wire format between the remote client and the server, without a server: a volume and a mask update cross
it unchanged (voxels, type, geometry, names), and each corrupt or inconsistent body is refused with the one-line
message the client shows, before anything large is allocated."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import numpy as np
import pytest

from medsam3.errors import VolumeError
from medsam3.geometry.volume import Volume
from medsam3.interaction.session import MaskUpdate
from medsam3.transports.wire_format import (
    WireFormatError, decode_mask_bits, decode_volume, decoded_bytes, encode_mask_bits, encode_volume,
    full_mask_from_region, mask_update_from_message, mask_update_to_message, read_volume_header, region_of_mask,
    prompt_from_message, voxel_count)

MATRIX = np.array([[0.0, 0.0, -2.5, 10.0], [-0.8, 0.0, 0.0, 20.0], [0.0, 0.7, 0.0, -30.0], [0.0, 0.0, 0.0, 1.0]])


def _body(header: dict, voxels: bytes = b"", raw_header: bytes | None = None) -> bytes:
    text = json.dumps(header).encode() if raw_header is None else raw_header
    return b"MSV1" + struct.pack("<I", len(text)) + text + zlib.compress(voxels)


def _header(**changes) -> dict:
    return {"shape": [2, 3, 4], "dtype": "int16", "byte_order": "little", "ijk_to_ras": MATRIX.tolist(),
            "modality": "MR", "name": "knee", **changes}


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"])
def test_a_volume_crosses_the_wire_with_its_voxels_type_geometry_modality_and_name(dtype):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 5)) * 100 + 100).astype(dtype)
    if dtype.startswith("float"):
        array[0, 0, 0] = 0.3  # not integral: kept as float
    volume = Volume(array, MATRIX, modality="MR", name="knee left")
    back = decode_volume(encode_volume(volume), compact=False)
    assert back.array.dtype == np.dtype(dtype) and back.array.shape == (3, 4, 5)
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_array_equal(back.ijk_to_ras, MATRIX)
    assert (back.modality, back.name) == ("MR", "knee left")


def test_boolean_and_other_voxel_types_travel_in_an_accepted_type():
    mask = np.eye(4, dtype=bool)[None].repeat(2, axis=0)
    back = decode_volume(encode_volume(Volume(mask, np.eye(4))), compact=False)
    assert back.array.dtype == np.uint8 and (back.array == mask).all()
    wide = np.full((2, 2, 2), 1.5, np.float16)
    header, _ = read_volume_header(encode_volume(Volume(wide, np.eye(4))))
    assert header["dtype"] == "float32" and header["byte_order"] == "little"
    np.testing.assert_array_equal(decode_volume(encode_volume(Volume(wide, np.eye(4)))).array, 1.5)
    zeros = Volume(np.zeros((2, 2, 2), np.float64), np.eye(4))
    assert decode_volume(encode_volume(zeros), compact=False).array.dtype == np.float64
    assert decode_volume(encode_volume(zeros)).array.dtype == np.uint8  # compacted by default


def test_the_header_says_how_many_voxels_and_bytes_the_upload_will_take():
    header, offset = read_volume_header(_body(_header(shape=[10, 20, 30], dtype="float32")))
    assert voxel_count(header) == 6000 and decoded_bytes(header) == 24000
    assert offset == 8 + len(json.dumps(_header(shape=[10, 20, 30], dtype="float32")).encode())


@pytest.mark.parametrize("body, message", [
    (b"MSV", r"^The upload is not a medsam3 volume \(it must start with MSV1\): use the medsam3 client to upload "
             r"volumes\.$"),
    (b"MSV2" + bytes(20), r"it must start with MSV1"),
    (b"MSV1" + struct.pack("<I", 64 * 1024 + 1) + b"{" * (64 * 1024 + 1), r"^The volume header is truncated or too "
                                                                          r"long\.$"),
    (b"MSV1" + struct.pack("<I", 50) + b"{}", r"truncated or too long"),
    (_body({}, raw_header=b"{not json"), r"^The volume header is not valid JSON \(Expecting property name"),
    (_body({}, raw_header=b"[" * 30000 + b"]" * 30000), r"^The volume header is nested too deeply: use the "
                                                          r"medsam3 client to upload volumes\.$"),
    (_body({}, raw_header=b"[1, 2]"), r"^The volume header must be a JSON object\.$"),
    (_body(_header(shape=[2, 3])), r"^The volume header needs 'shape': three positive integers \[k, j, i\]\.$"),
    (_body(_header(shape=[2, 0, 4])), r"three positive integers"),
    (_body(_header(shape=[2, 3.0, 4])), r"three positive integers"),
    (_body(_header(shape=[2, True, 4])), r"three positive integers"),
    (_body(_header(shape="2,3,4")), r"three positive integers"),
    (_body(_header(dtype="complex64")), r"^Voxel type 'complex64' is not accepted; use one of uint8, int8, uint16, "
                                        r"int16, uint32, int32, float32, float64\.$"),
    (_body(_header(byte_order="middle")), r"""^'byte_order' 'middle' is not accepted; use "little" or "big"\.$"""),
    (_body(_header(modality="PET")), r"^Unknown modality 'PET'; use one of CT, MR, OT\.$"),
])
def test_a_bad_header_is_refused_in_one_line(body, message):
    with pytest.raises(WireFormatError, match=message):
        read_volume_header(body)


def test_a_header_with_only_the_required_fields_is_read_with_the_defaults():
    header = {"shape": [1, 2, 2], "dtype": "int16", "ijk_to_ras": np.eye(4).tolist()}
    volume = decode_volume(_body(header, np.array([1, 2, 300, -4], "<i2").tobytes()))  # little-endian by default
    assert (volume.modality, volume.name) == ("CT", "") and volume.array.tolist() == [[[1, 2], [300, -4]]]
    long_name = decode_volume(_body({**header, "name": "x" * 500}, bytes(8)))
    assert long_name.name == "x" * 200


@pytest.mark.parametrize("voxels, message", [
    (bytes(47), r"^The volume data has 47 bytes where its header declares 48 \(or is truncated\)\.$"),
    (bytes(49), r"^The volume data does not match its header: it holds more than the 48 bytes declared\.$"),
])
def test_voxels_that_do_not_fill_the_declared_shape_exactly_are_refused(voxels, message):
    with pytest.raises(WireFormatError, match=message):
        decode_volume(_body(_header(), voxels))


def test_corrupt_or_truncated_voxel_data_is_refused():
    body = _body(_header(), bytes(range(48)))
    offset = read_volume_header(body)[1]
    with pytest.raises(WireFormatError, match=r"^The volume data is corrupt \("):
        decode_volume(body[:offset] + b"\x00" + body[offset + 1:])  # the zlib stream's first byte
    with pytest.raises(WireFormatError, match=r"declares 48 \(or is truncated\)"):
        decode_volume(body[:-6])
    big = _body(_header(shape=[64, 64, 64]), bytes(64 ** 3 * 2))  # more than one inflate chunk when chunks are small
    from medsam3.transports import wire_format
    out = np.empty(64 ** 3 * 2, np.uint8)
    wire_format._inflate_into(memoryview(big)[read_volume_header(big)[1]:], out, "volume", chunk_bytes=1000)
    assert not out.any()


@pytest.mark.parametrize("matrix", [[[1, 2], [3, 4]], "eye", [[1, 0, 0, 0]] * 3 + [["a", 0, 0, 1]], None])
def test_a_matrix_that_is_not_4x4_numbers_is_refused(matrix):
    with pytest.raises((WireFormatError, VolumeError), match=r"4x4 matrix"):
        decode_volume(_body(_header(ijk_to_ras=matrix), bytes(48)))


def test_big_endian_voxels_are_read_in_their_order():
    values = (np.arange(24).reshape(2, 3, 4) * 300).astype(">i2")
    volume = decode_volume(_body(_header(byte_order="big"), values.tobytes()), compact=False)
    assert volume.array.dtype == np.int16 and volume.array.dtype.isnative
    np.testing.assert_array_equal(volume.array, values.astype(np.int16))


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (9,), (3, 5, 7), (2, 1, 1)])
def test_mask_bits_cross_unchanged(shape):
    values = np.random.default_rng(sum(shape)).random(shape) > 0.5
    text = encode_mask_bits(values)
    assert base64.b64decode(text)  # ASCII base64
    back = decode_mask_bits(text, shape)
    assert back.dtype == bool and back.shape == shape
    np.testing.assert_array_equal(back, values)


@pytest.mark.parametrize("text, shape, message", [
    ("not base64!", (2, 2), r"^Mask bits are not valid base64\.$"),
    ("é", (2, 2), r"^Mask bits are not valid base64\.$"),
    (base64.b64encode(b"garbage").decode(), (2, 2), r"^The mask data is corrupt \("),
    (encode_mask_bits(np.ones(9, bool)), (8,), r"^The mask data does not match its declared size \(or is "
                                                 r"truncated\)\.$"),
    (encode_mask_bits(np.ones(8, bool)), (9,), r"^The mask data has 1 bytes where its header declares 2\.$"),
    (base64.b64encode(zlib.compress(b"\x01")[:-3]).decode(), (8,), r"declared size \(or is truncated\)"),
    (encode_mask_bits(np.ones(8, bool)), (0, 3), r"^The mask data declares no voxels \(a box with an empty side\): "
                                                 r"send a box that holds at least one voxel\.$"),
])
def test_bad_mask_bits_are_refused_in_one_line(text, shape, message):
    with pytest.raises(WireFormatError, match=message):
        decode_mask_bits(text, shape)


def test_a_mask_region_lands_on_its_voxels_and_a_box_outside_or_empty_is_refused():
    mask = np.zeros((5, 6, 7), bool)
    mask[1:3, 2:5, 3:4] = True
    mask[2, 4, 6] = True
    box, inside = region_of_mask(mask)
    assert box == (1, 3, 2, 5, 3, 7) and inside.shape == (2, 3, 4)
    rebuilt = full_mask_from_region(box, encode_mask_bits(inside), mask.shape)
    assert rebuilt.dtype == bool
    np.testing.assert_array_equal(rebuilt, mask)
    assert region_of_mask(np.zeros((5, 6, 7), bool))[0] == (0,) * 6
    assert region_of_mask(np.zeros((5, 6, 7), bool))[1].shape == (0, 0, 0)
    assert region_of_mask(np.zeros((5, 6, 7), bool))[1].dtype == bool
    edge = np.zeros((5, 6, 7), bool)
    edge[4, 5, 6] = edge[0, 0, 0] = True  # the box reaches both ends of every axis
    np.testing.assert_array_equal(full_mask_from_region(*region_of_mask(edge)[:1], encode_mask_bits(edge), edge.shape),
                                  edge)
    bits = encode_mask_bits(np.ones((1, 1, 1), bool))
    with pytest.raises(WireFormatError, match=r"^A mask box has six integers \(k0, k1, j0, j1, i0, i1\)\.$"):
        full_mask_from_region((0, 1, 0, 1, 0), bits, (5, 6, 7))
    for outside in [(4, 6, 0, 1, 0, 1), (0, 1, 5, 7, 0, 1), (0, 1, 0, 1, 6, 8), (-1, 0, 0, 1, 0, 1),
                    (2, 1, 0, 1, 0, 1)]:
        with pytest.raises(VolumeError, match=r"^The mask box \[.*\] does not fit in the volume of shape \[5, 6, 7\]"):
            full_mask_from_region(outside, bits, (5, 6, 7))
    with pytest.raises(VolumeError, match=r"^The mask box \[0, 1, 0, 0, 0, 1\] is empty \(a side of zero voxels\)"):
        full_mask_from_region((0, 1, 0, 0, 0, 1), bits, (5, 6, 7))


def test_a_mask_update_crosses_with_every_field():
    values = np.random.default_rng(1).random((2, 3, 4)) > 0.5
    update = MaskUpdate(3, (1, 3, 2, 5, 0, 4), values, {1: 0.5, 2: 0.875}, "coronal", "liver", "a note")
    message = json.loads(json.dumps(mask_update_to_message(update)))
    assert set(message) == {"object_id", "box", "bits", "slice_scores", "axis", "label", "note"}
    back = mask_update_from_message(message)
    assert (back.object_id, back.box, back.slice_scores, back.axis, back.label, back.note) == (
        3, (1, 3, 2, 5, 0, 4), {1: 0.5, 2: 0.875}, "coronal", "liver", "a note")
    np.testing.assert_array_equal(back.values, values)
    empty = mask_update_from_message({"object_id": 2, "box": [0] * 6, "bits": ""})
    assert empty.is_empty and empty.values.shape == (0, 0, 0) and empty.values.dtype == bool
    assert (empty.slice_scores, empty.axis, empty.label, empty.note) == ({}, "", "", "")


@pytest.mark.parametrize("message", [{"box": [0] * 6, "bits": ""}, {"object_id": 1, "box": None, "bits": ""},
                                     {"object_id": "one", "box": [0] * 6, "bits": ""},
                                     {"object_id": 1, "box": [0, 1, 0, 1, 0, 1], "bits": "!!"}])
def test_a_mask_update_the_client_cannot_read_is_one_clear_error(message):
    with pytest.raises(WireFormatError, match=r"^(The server sent a mask update the client cannot read|Mask bits)"):
        mask_update_from_message(message)


def test_a_starting_slice_mask_of_the_wrong_shape_or_size_is_refused():
    bits = encode_mask_bits(np.ones((2, 2), bool))
    prompt = {"axis": "axial", "mask": {"shape": [2, 2], "bits": bits}}
    assert prompt_from_message(prompt).mask.shape == (2, 2)
    assert prompt_from_message({"axis": "axial", "points": [{"ijk": [1, 2, 3]}]}).points[0].positive
    for shape in ([2, 2, 2], [0, 4], [4]):
        with pytest.raises(WireFormatError, match=r"^A starting slice mask must be a 2D \(rows, columns\) mask; got "
                                                  rf"shape \[{', '.join(map(str, shape))}\]\.$"):
            prompt_from_message({"axis": "axial", "mask": {"shape": shape, "bits": bits}})
    one_row = encode_mask_bits(np.ones((1, 7), bool))  # a starting mask one pixel high is still a mask
    assert prompt_from_message({"axis": "axial", "mask": {"shape": [1, 7], "bits": one_row}}).mask.all()
    with pytest.raises(WireFormatError, match=r"got shape \[97, 172961\]"):  # one pixel over 4096 x 4096
        prompt_from_message({"axis": "axial", "mask": {"shape": [97, 172961], "bits": bits}})
    with pytest.raises(WireFormatError, match=r"^The mask data has 1 bytes where its header declares 2097152\.$"):
        prompt_from_message({"axis": "axial", "mask": {"shape": [4096, 4096], "bits": bits}})  # accepted size
    assert prompt_from_message({"axis": "axial", "mask": {"shape": [2, 2], "bits": bits}},
                               max_mask_pixels=4).mask.all()
    with pytest.raises(WireFormatError, match=r"got shape \[2, 2\]"):
        prompt_from_message({"axis": "axial", "mask": {"shape": [2, 2], "bits": bits}}, max_mask_pixels=3)
