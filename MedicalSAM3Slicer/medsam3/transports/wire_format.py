"""How volumes and mask regions travel between the remote client and the server.

A volume is uploaded once per session as one binary body: the magic bytes ``MSV1``, a 4-byte little-endian
header length, a JSON header (shape, dtype, IJK-to-RAS matrix, modality, name) and the zlib-compressed voxels.
Masks travel as :class:`MaskRegion` JSON: a half-open box ``(k0, k1, j0, j1, i0, i1)`` and the box's voxels as
packed bits, zlib-compressed, base64-encoded. Decoding checks every size before it allocates or decompresses,
so a corrupt or hostile upload costs a 4xx and nothing more.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import struct
import typing
import zlib
from enum import Enum

import numpy as np

from ..errors import MedSam3Error, VolumeError
from ..interaction.prompts import SlicePrompt, optional_type, prompt_fields, tuple_items
from ..interaction.session import MaskUpdate, bounding_box
from ..geometry.slicing import SliceAxis
from ..geometry.volume import MODALITIES, Volume, compact_voxels

VOLUME_MAGIC = b"MSV1"
VOLUME_MEDIA_TYPE = "application/octet-stream"
ALLOWED_VOXEL_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
_MAX_HEADER_BYTES = 64 * 1024


class WireFormatError(MedSam3Error, ValueError):
    """A message between client and server is corrupt or inconsistent."""


# --- volumes --------------------------------------------------------------------------------------------------
def encode_volume(volume: Volume, level: int = 1) -> bytes:
    """A volume as one compressed upload body."""
    array = np.ascontiguousarray(volume.array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.name not in ALLOWED_VOXEL_TYPES:
        array = array.astype(np.float32)
    header = json.dumps({
        "shape": list(array.shape), "dtype": array.dtype.name, "byte_order": "little",
        "ijk_to_ras": np.asarray(volume.ijk_to_ras, dtype=float).tolist(), "modality": volume.modality,
        "name": volume.name,
    }).encode()
    voxels = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return VOLUME_MAGIC + struct.pack("<I", len(header)) + header + zlib.compress(voxels, level)


def read_volume_header(body: bytes) -> tuple[dict, int]:
    """The JSON header of an upload body and the offset of its compressed voxels."""
    if len(body) < 8 or body[:4] != VOLUME_MAGIC:
        raise WireFormatError("The upload is not a medsam3 volume (it must start with MSV1): use the medsam3 "
                              "client to upload volumes.")
    (header_length,) = struct.unpack("<I", body[4:8])
    if header_length > _MAX_HEADER_BYTES or 8 + header_length > len(body):
        raise WireFormatError("The volume header is truncated or too long.")
    try:
        header = json.loads(body[8:8 + header_length])
    except ValueError as error:  # not JSON, not UTF-8, or a number of more than 4300 digits
        raise WireFormatError(f"The volume header is not valid JSON ({str(error)[:200]}).") from error
    except RecursionError:  # a deeply nested header
        raise WireFormatError("The volume header is nested too deeply: use the medsam3 client to upload "
                              "volumes.") from None
    if not isinstance(header, dict):
        raise WireFormatError("The volume header must be a JSON object.")
    shape = header.get("shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise WireFormatError("The volume header needs 'shape': three positive integers [k, j, i].")
    if header.get("dtype") not in ALLOWED_VOXEL_TYPES:
        raise WireFormatError(f"Voxel type {header.get('dtype')!r} is not accepted; use one of "
                              f"{', '.join(ALLOWED_VOXEL_TYPES)}.")
    if header.get("byte_order", "little") not in ("little", "big"):
        raise WireFormatError(f"'byte_order' {header.get('byte_order')!r} is not accepted; use \"little\" or "
                              "\"big\".")
    if header.get("modality", "CT") not in MODALITIES:
        raise WireFormatError(f"Unknown modality {header.get('modality')!r}; use one of {', '.join(MODALITIES)}.")
    return header, 8 + header_length


def voxel_count(header: dict) -> int:
    k, j, i = header["shape"]
    return int(k) * int(j) * int(i)


def decoded_bytes(header: dict) -> int:
    """The bytes an upload's voxels take once inflated, in the declared type."""
    return voxel_count(header) * np.dtype(header["dtype"]).itemsize


def decode_volume(body: bytes | memoryview, compact: bool = True) -> Volume:
    """The volume in an upload body; :class:`WireFormatError` or :class:`VolumeError` when it is unusable.

    The voxels are read in the header's ``byte_order`` and, with ``compact``, kept in the smallest type that
    holds them exactly (float64 zeros take one byte per voxel, not eight)."""
    header, offset = read_volume_header(body)
    dtype = np.dtype(header["dtype"]).newbyteorder("<" if header.get("byte_order", "little") == "little" else ">")
    array = np.empty(voxel_count(header), dtype=dtype)
    _inflate_into(memoryview(body)[offset:], array.view(np.uint8), "volume")
    array = array.astype(dtype.newbyteorder("="), copy=False)
    if compact:
        array = compact_voxels(array.reshape(header["shape"]))
    try:
        matrix = np.asarray(header.get("ijk_to_ras"), dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise WireFormatError("'ijk_to_ras' must be a 4x4 matrix of numbers.") from error
    return Volume(array.reshape(header["shape"]), matrix, modality=header.get("modality", "CT"),
                  name=str(header.get("name", ""))[:200])


def _inflate_into(data, out: np.ndarray, what: str, chunk_bytes: int = 1 << 24) -> None:
    """Inflate zlib ``data`` straight into the byte array ``out``, which it must fill exactly (no second copy of
    the voxels, and never more than ``out`` is written)."""
    inflater = zlib.decompressobj()
    position, expected, pending = 0, out.size, data
    try:
        while not inflater.eof:
            chunk = inflater.decompress(pending, min(chunk_bytes, expected - position + 1))
            if position + len(chunk) > expected:
                raise WireFormatError(f"The {what} data does not match its header: it holds more than the {expected} "
                                      "bytes declared.")
            out[position:position + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            position += len(chunk)
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                break
    except zlib.error as error:
        raise WireFormatError(f"The {what} data is corrupt ({error}).") from error
    if not inflater.eof or position != expected:
        raise WireFormatError(f"The {what} data has {position} bytes where its header declares {expected} (or is "
                              "truncated).")


def _inflate(data: bytes, expected: int, what: str) -> bytes:
    """zlib data that must inflate to exactly ``expected`` bytes (never more is allocated). ``expected`` must be
    positive: zlib reads a ``max_length`` of 0 as *unlimited*, so 0 is never passed on."""
    if expected < 1:
        raise WireFormatError(f"The {what} data declares no voxels (a box with an empty side): send a box that holds "
                              "at least one voxel.")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, expected)
        if inflater.unconsumed_tail or not inflater.eof:
            raise WireFormatError(f"The {what} data does not match its declared size (or is truncated).")
    except zlib.error as error:
        raise WireFormatError(f"The {what} data is corrupt ({error}).") from error
    if len(out) != expected:
        raise WireFormatError(f"The {what} data has {len(out)} bytes where its header declares {expected}.")
    return out


# --- mask regions ---------------------------------------------------------------------------------------------
def encode_mask_bits(values: np.ndarray) -> str:
    """A bool array as base64(zlib(packbits))."""
    packed = np.packbits(np.ascontiguousarray(values, dtype=bool).reshape(-1))
    return base64.b64encode(zlib.compress(packed.tobytes(), 6)).decode("ascii")


def decode_mask_bits(text: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_mask_bits` for a known shape."""
    count = int(np.prod(shape)) if shape else 0
    try:
        compressed = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise WireFormatError("Mask bits are not valid base64.") from error
    packed = _inflate(compressed, (count + 7) // 8, "mask")
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=count).astype(bool).reshape(shape)


def box_shape(box: tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    """The (k, j, i) size of a half-open box ``(k0, k1, j0, j1, i0, i1)``."""
    return tuple(max(0, int(box[2 * a + 1]) - int(box[2 * a])) for a in range(3))


def check_box_inside(box: tuple[int, ...] | list[int], volume_shape: tuple[int, int, int]) -> None:
    if len(box) != 6:
        raise WireFormatError("A mask box has six integers (k0, k1, j0, j1, i0, i1).")
    for axis in range(3):
        low, high = int(box[2 * axis]), int(box[2 * axis + 1])
        if not 0 <= low <= high <= volume_shape[axis]:
            raise VolumeError(f"The mask box {list(box)} does not fit in the volume of shape {list(volume_shape)}.")


def full_mask_from_region(box: tuple[int, ...] | list[int], bits: str,
                          volume_shape: tuple[int, int, int]) -> np.ndarray:
    """A whole-volume mask that is ``bits`` inside ``box`` and empty elsewhere."""
    check_box_inside(box, volume_shape)
    if not all(box_shape(box)):
        raise VolumeError(f"The mask box {list(box)} is empty (a side of zero voxels): send the bounding box of the "
                          "mask's voxels, or reset the object to clear it.")
    mask = np.zeros(volume_shape, dtype=bool)
    region = decode_mask_bits(bits, box_shape(box))
    k0, k1, j0, j1, i0, i1 = (int(v) for v in box)
    mask[k0:k1, j0:j1, i0:i1] = region
    return mask


def region_of_mask(mask: np.ndarray) -> tuple[tuple[int, int, int, int, int, int], np.ndarray]:
    """The bounding box of a mask's voxels and the mask inside it (an empty box for an empty mask)."""
    box = bounding_box(mask)
    if box is None:
        return (0, 0, 0, 0, 0, 0), np.zeros((0, 0, 0), dtype=bool)
    k0, k1, j0, j1, i0, i1 = box
    return box, mask[k0:k1, j0:j1, i0:i1]


# --- mask updates and prompts as JSON messages ---------------------------------------------------------------
def mask_update_to_message(update: MaskUpdate) -> dict:
    """A :class:`MaskUpdate` as the JSON the server answers with (only the changed box travels)."""
    return {"object_id": int(update.object_id), "box": [int(v) for v in update.box],
            "bits": encode_mask_bits(update.values), "slice_scores": {str(k): float(v)
                                                                      for k, v in update.slice_scores.items()},
            "axis": update.axis, "label": update.label, "note": update.note}


def mask_update_from_message(message: dict) -> MaskUpdate:
    """Inverse of :func:`mask_update_to_message`."""
    try:
        box = tuple(int(v) for v in message["box"])
        shape = box_shape(box)
        values = decode_mask_bits(message["bits"], shape) if all(shape) else np.zeros((0, 0, 0), dtype=bool)
        scores = {int(k): float(v) for k, v in message.get("slice_scores", {}).items()}
        return MaskUpdate(int(message["object_id"]), box, values, scores, str(message.get("axis", "")),
                          str(message.get("label", "")), str(message.get("note", "")))
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, MedSam3Error):
            raise
        raise WireFormatError(f"The server sent a mask update the client cannot read ({error}).") from error


def prompt_to_message(prompt) -> dict:
    """A prompt (:class:`SlicePrompt`, or any dataclass of :mod:`..interaction.prompts`' field types) as JSON,
    field by field from its definition: tuples travel as lists, a view as its name, a starting slice mask as packed
    bits with its shape."""
    return {f.name: _to_json(kind, getattr(prompt, f.name)) for f, kind in prompt_fields(type(prompt))}


def prompt_from_message(message: dict, definition: type = SlicePrompt, max_mask_pixels: int = 16_777_216):
    """Inverse of :func:`prompt_to_message`; the prompt is checked against a volume later. Fields the message
    leaves out take the definition's defaults."""
    return definition(**{f.name: _from_json(kind, message[f.name], max_mask_pixels)
                         for f, kind in prompt_fields(definition) if f.name in message})


def _to_json(kind, value):
    kind = optional_type(kind)[0]
    if value is None:
        return None
    if dataclasses.is_dataclass(kind):
        return prompt_to_message(value)
    if kind is np.ndarray:
        mask = np.asarray(value, dtype=bool)
        return {"shape": list(mask.shape), "bits": encode_mask_bits(mask)}
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value).value
    if typing.get_origin(kind) is tuple:
        return [_to_json(item, v) for item, v in zip(tuple_items(kind, len(value)), value)]
    return kind(value)  # bool, int, float, str


def _from_json(kind, value, max_mask_pixels: int):
    kind = optional_type(kind)[0]
    if value is None:
        return None
    if dataclasses.is_dataclass(kind):
        return prompt_from_message(value, kind, max_mask_pixels)
    if kind is np.ndarray:
        shape = tuple(int(n) for n in value["shape"])
        if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] > max_mask_pixels:
            raise WireFormatError(f"A starting slice mask must be a 2D (rows, columns) mask; got shape {list(shape)}.")
        return decode_mask_bits(value["bits"], shape)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value)
    if typing.get_origin(kind) is tuple:
        items = tuple_items(kind, len(value))
        if len(items) != len(value):
            raise WireFormatError(f"A prompt field of {len(items)} numbers has {len(value)}: {list(value)[:8]}.")
        return tuple(_from_json(item, v, max_mask_pixels) for item, v in zip(items, value))
    return kind(value)
