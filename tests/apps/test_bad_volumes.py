"""Volumes that must not be segmented silently: truncated files, NaN / infinite voxels (refused by the engine, so
in every transport), uploads in another byte order, an empty DICOM folder; and uploads kept in the smallest
voxel type that holds them exactly."""

from __future__ import annotations

import json
import struct
import zlib

import httpx
import numpy as np
import pytest

from medsam3.apps.cli import main
from medsam3.errors import VolumeError
from medsam3.geometry.volume import Volume
from medsam3.transports.wire_format import VOLUME_MAGIC, WireFormatError, decode_volume, encode_volume

from server_harness import API_KEY, oracle_backend_factory, running_server, small_volume, write_nifti

AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/octet-stream"}
CLICK = ["--point", "8,8,1", "--ijk", "--slice-only"]


def raw_upload(array: np.ndarray, byte_order: str = "little", dtype: str | None = None) -> bytes:
    """An upload body written by hand (encode_volume only takes volumes the engine accepts)."""
    header = json.dumps({"shape": list(array.shape), "dtype": dtype or array.dtype.name, "byte_order": byte_order,
                         "ijk_to_ras": np.eye(4).tolist(), "modality": "CT", "name": "hand-made"}).encode()
    voxels = array.astype(array.dtype.newbyteorder("<" if byte_order == "little" else ">")).tobytes()
    return VOLUME_MAGIC + struct.pack("<I", len(header)) + header + zlib.compress(voxels)


def run_cli(capsys, *arguments) -> tuple[int, str]:
    status = main([str(a) for a in arguments], backend_factory=oracle_backend_factory)
    return status, capsys.readouterr().err.strip()


def nan_volume() -> np.ndarray:
    array = small_volume().array.astype(np.float32)
    array[2:4] = np.nan
    array[0, 0, 0] = np.inf
    return array


# --- truncated files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.mha"])
def test_truncated_image_file_is_refused_in_one_line(tmp_path, capsys, name):
    image = write_nifti(Volume(np.random.default_rng(0).integers(-1000, 1000, (8, 32, 32)).astype(np.int16),
                               np.eye(4)), tmp_path / name)
    data = image.read_bytes()
    image.write_bytes(data[:len(data) // 2])
    status, error = run_cli(capsys, "segment", image, *CLICK, "-o", tmp_path / "mask.nii.gz")
    assert status == 1 and len(error.splitlines()) == 1, error
    assert "truncated" in error
    assert not (tmp_path / "mask.nii.gz").exists()


# --- NaN and infinite voxels ------------------------------------------------------------------------------------
def test_the_engine_refuses_nan_and_infinite_voxels_and_says_where():
    with pytest.raises(VolumeError, match=r"513 NaN or infinite voxels \(in 3 of its 4 slices, k 0 to 3\)"):
        Volume(nan_volume(), np.eye(4))


@pytest.mark.parametrize("name, dtype", [("nan.nrrd", np.float32), ("nan.mha", np.float32), ("nan.nii.gz", np.float32),
                                         ("nan.nii", np.float64)])
def test_command_line_refuses_a_volume_with_nan_slices(tmp_path, capsys, name, dtype):
    """NIfTI too: SimpleITK's NIfTI reader would read NaN and infinite voxels as 0, without a word."""
    image = tmp_path / name
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(nan_volume().astype(dtype)), str(image))
    status, error = run_cli(capsys, "segment", image, *CLICK, "-o", tmp_path / "mask.nii.gz")
    assert status == 1 and len(error.splitlines()) == 1, error
    assert "NaN or infinite voxels" in error and "nan_to_num" in error


def test_server_refuses_an_upload_with_nan_voxels_with_the_engine_message():
    with running_server() as url:
        response = httpx.post(f"{url}/sessions", content=raw_upload(nan_volume()), headers=AUTH)
        assert response.status_code == 422
        assert "NaN or infinite voxels" in response.json()["error"]["message"]
        assert httpx.get(f"{url}/info", headers=AUTH).json()["open_sessions"] == 0


# --- byte order -------------------------------------------------------------------------------------------------
def test_big_endian_upload_is_read_in_its_byte_order():
    original = np.random.default_rng(1).normal(0, 300, (3, 5, 7))  # float64, not integral: stays float64
    decoded = decode_volume(raw_upload(original, "big")).array
    np.testing.assert_array_equal(decoded, original)
    ct = small_volume().array
    np.testing.assert_array_equal(decode_volume(raw_upload(ct, "big")).array, ct)


def test_unknown_byte_order_is_refused():
    with pytest.raises(WireFormatError, match="byte_order"):
        decode_volume(raw_upload(small_volume().array, "middle"))
    with running_server() as url:
        response = httpx.post(f"{url}/sessions", content=raw_upload(small_volume().array, "middle"), headers=AUTH)
        assert response.status_code == 400 and "byte_order" in response.json()["error"]["message"]


# --- smallest exact voxel type -------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, dtype, kept_as", [
    (np.zeros((4, 8, 8)), np.float64, np.uint8),
    (np.full((4, 8, 8), -1000.0), np.float64, np.int16),
    (np.full((4, 8, 8), 0.5), np.float64, np.float32),
    (np.full((4, 8, 8), 0.1), np.float64, np.float64),
    (np.full((4, 8, 8), 70000), np.int32, np.int32),
    (np.full((4, 8, 8), -3), np.int32, np.int8),
])
def test_uploads_are_kept_in_the_smallest_exact_type(values, dtype, kept_as):
    from medsam3.geometry.volume import smallest_exact_dtype

    array = values.astype(dtype)
    decoded = decode_volume(encode_volume(Volume(array, np.eye(4)))).array
    assert decoded.dtype == np.dtype(kept_as) and smallest_exact_dtype(array) == np.dtype(kept_as)
    np.testing.assert_array_equal(decoded.astype(dtype), array)


# --- DICOM ------------------------------------------------------------------------------------------------------
def test_empty_dicom_folder_is_one_line_without_itk_warnings(tmp_path, capfd):
    (tmp_path / "empty").mkdir()
    status = main(["segment", str(tmp_path / "empty"), *CLICK, "-o", str(tmp_path / "m.nii.gz")],
                  backend_factory=oracle_backend_factory)
    printed = capfd.readouterr()
    assert status == 1
    assert printed.err.strip().splitlines() == [printed.err.strip()], printed.err
    assert "without a DICOM series" in printed.err and "WARNING" not in printed.err
