"""A volume as the engine sees it: what is refused (with the message a user reads), the geometry read off its
IJK-to-RAS matrix, voxel <-> world points, which points fall inside, the smallest exact voxel type, and the
fingerprint that keys cached embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from medsam3.errors import VolumeError
from medsam3.geometry.volume import Volume, compact_voxels, smallest_exact_dtype

# LPS-to-RAS flipped, anisotropic, with permuted axes and an origin: columns are the i, j, k steps in RAS mm
MATRIX = np.array([[0.0, 0.0, -2.5, 10.0],
                   [-0.8, 0.0, 0.0, 20.0],
                   [0.0, 0.7, 0.0, -30.0],
                   [0.0, 0.0, 0.0, 1.0]])


def _volume(shape=(4, 5, 6), dtype=np.int16, matrix=MATRIX, **kwargs) -> Volume:
    return Volume(np.arange(np.prod(shape)).reshape(shape).astype(dtype), matrix, **kwargs)


@pytest.mark.parametrize("array, matrix, message", [
    (np.zeros((4, 5)), np.eye(4), r"^A volume must be 3D; got an array of shape \(4, 5\)\. Load a single-component "
                                  r"scalar volume\.$"),
    (np.zeros((4, 5, 6, 3)), np.eye(4), r"^A volume must be 3D; got an array of shape \(4, 5, 6, 3\)\."),
    (np.zeros((4, 0, 6)), np.eye(4), r"^The volume is empty \(shape \(4, 0, 6\)\)\.$"),
    (np.zeros((4, 5, 6), dtype="U1"), np.eye(4), r"^Voxel type <U1 is not numeric\.$"),
    (np.zeros((4, 5, 6)), np.eye(3), r"^The IJK-to-RAS matrix must be a finite 4x4 matrix\.$"),
    (np.zeros((4, 5, 6)), np.where(np.eye(4), np.nan, 0.0), r"^The IJK-to-RAS matrix must be a finite 4x4 matrix"),
    (np.zeros((4, 5, 6)), np.diag([1.0, 0.0, 1.0, 1.0]), r"^The IJK-to-RAS matrix is singular \(a spacing is "
                                                         r"zero\): fix the image header\.$"),
    (np.zeros((4, 5, 6)), np.diag([1e-5, 1e-5, 1e-5, 1.0]), r"singular"),  # 1e-15 mm3 voxels
])
def test_an_unusable_volume_is_refused_in_one_line_that_says_what_is_wrong(array, matrix, message):
    with pytest.raises(VolumeError, match=message):
        Volume(array, matrix)


def test_a_small_but_real_voxel_a_bool_volume_and_every_modality_are_accepted():
    assert Volume(np.zeros((2, 2, 2)), np.diag([1e-4, 1e-4, 1e-3, 1.0])).spacing[2] == pytest.approx(1e-3)
    assert Volume(np.zeros((1, 1, 1), bool), np.eye(4)).shape_ijk == (1, 1, 1)
    for modality in ("CT", "MR", "OT"):
        assert _volume(modality=modality).modality == modality
    with pytest.raises(VolumeError, match=r"^Unknown modality 'PET'; use one of CT, MR, OT\.$"):
        _volume(modality="PET")


def test_nan_and_infinite_voxels_are_refused_with_where_they_are_and_integer_volumes_are_not_scanned():
    array = np.zeros((6, 3, 3), np.float32)
    array[2, 0, 0], array[4, 1, 1], array[4, 2, 2] = np.nan, np.inf, -np.inf
    with pytest.raises(VolumeError, match=r"^The volume has 3 NaN or infinite voxels \(in 2 of its 6 slices, k 2 to "
                                          r"4\); the model cannot read them\. Replace them with the background value "
                                          r"\(e\.g\. numpy\.nan_to_num\) and load it again\.$"):
        Volume(array, np.eye(4))
    big = np.zeros((3, 40, 40), np.float64)
    big[0] = np.nan
    with pytest.raises(VolumeError, match=r"has 1,600 NaN or infinite voxels \(in 1 of its 3 slices, k 0 to 0\)"):
        Volume(big, np.eye(4))
    assert Volume(np.full((2, 2, 2), 7, np.int32), np.eye(4)).array.dtype == np.int32
    for bad in (np.inf, -np.inf):  # one infinite voxel alone, no NaN beside it
        only = np.zeros((2, 2, 2), np.float32)
        only[1, 1, 1] = bad
        with pytest.raises(VolumeError, match=r"has 1 NaN or infinite voxels \(in 1 of its 2 slices, k 1 to 1\)"):
            Volume(only, np.eye(4))


def test_geometry_is_read_off_the_matrix():
    volume = _volume()
    assert volume.shape_ijk == (6, 5, 4)  # array[k, j, i]
    np.testing.assert_allclose(volume.spacing, [0.8, 0.7, 2.5])
    np.testing.assert_allclose(volume.directions, [[0, 0, -1], [-1, 0, 0], [0, 1, 0]])
    np.testing.assert_allclose(volume.ras_to_ijk @ MATRIX, np.eye(4), atol=1e-12)
    assert volume.ijk_to_ras.dtype == np.float64
    assert Volume(volume.array, MATRIX.astype(np.float32)).ijk_to_ras.dtype == np.float64


def test_voxels_and_world_points_map_both_ways():
    volume = _volume()
    ijk = np.array([[0, 0, 0], [5, 4, 3], [1.5, 2, 0.25]])
    ras = volume.ijk_to_ras_points(ijk)
    np.testing.assert_allclose(ras, [[10, 20, -30], [10 - 7.5, 20 - 4.0, -30 + 2.8], [10 - 0.625, 20 - 1.2, -30 + 1.4]])
    np.testing.assert_allclose(volume.ras_to_ijk_points(ras), ijk, atol=1e-12)
    np.testing.assert_allclose(volume.ijk_to_ras_points([5, 4, 3]), ras[1:2])  # one point, not a list
    np.testing.assert_allclose(volume.ras_to_ijk_points(ras[1]), ijk[1:2], atol=1e-12)


def test_a_point_is_inside_within_half_a_voxel_of_a_voxel_centre():
    volume = _volume()  # i 0..5, j 0..4, k 0..3
    inside = [[0, 0, 0], [5, 4, 3], [-0.5, -0.5, -0.5], [5.49, 4.49, 3.49], [2, 2, 2]]
    outside = [[-0.51, 0, 0], [0, -0.51, 0], [0, 0, -0.51], [5.5, 0, 0], [0, 4.5, 0], [0, 0, 3.5], [6, 5, 4]]
    np.testing.assert_array_equal(volume.contains_ijk(inside), [True] * 5)
    np.testing.assert_array_equal(volume.contains_ijk(outside), [False] * 7)
    np.testing.assert_array_equal(volume.contains_ijk([2, 2, 2]), [True])


@pytest.mark.parametrize("values, dtype, kept_as", [
    ([0, 255], np.int64, np.uint8), ([-128, 127], np.int64, np.int8), ([-129, 0], np.int64, np.int16),
    ([0, 256], np.int64, np.uint16), ([-1, 255], np.int64, np.int16), ([0, 65535], np.int64, np.uint16),
    ([-32769, 0], np.int64, np.int32), ([0, 2 ** 32 - 1], np.int64, np.uint32), ([-2 ** 31, 0], np.int64, np.int32),
    ([0, 2 ** 32], np.int64, np.int64), ([0, 1], np.uint8, np.uint8),
    ([0, 1], np.int16, np.uint8), ([-1000.0, 3000.0], np.float64, np.int16), ([0.5, 1.0], np.float64, np.float32),
    ([0.1, 1.0], np.float64, np.float64), ([-1000.0, 0.5], np.float32, np.float32),
    ([0.0, 2.0 ** 40], np.float64, np.float32), ([0.0, 1e12 + 1], np.float64, np.float64),
    ([0.0, 1.0], np.float32, np.uint8), ([0.0, np.inf], np.float64, np.float32),
])
def test_voxels_are_kept_in_the_smallest_type_that_holds_them_exactly(values, dtype, kept_as):
    array = np.resize(np.asarray(values, dtype=dtype), (3, 2, 2))
    assert smallest_exact_dtype(array) == np.dtype(kept_as)
    compact = compact_voxels(array)
    assert compact.dtype == np.dtype(kept_as)
    np.testing.assert_array_equal(compact.astype(dtype), array)
    assert (compact is array) == (np.dtype(kept_as) == array.dtype)  # no copy when nothing is gained


def test_boolean_and_empty_arrays_keep_their_type():
    assert smallest_exact_dtype(np.zeros((2, 2, 2), bool)) == np.dtype(bool)
    assert smallest_exact_dtype(np.zeros((0, 2, 2), np.float64)) == np.dtype(np.float64)


def test_the_fingerprint_changes_with_voxels_type_shape_and_geometry_and_only_with_them():
    volume = _volume()
    same = Volume(volume.array.copy(), MATRIX.copy(), modality="MR", name="another name")
    assert volume.fingerprint == same.fingerprint == volume.fingerprint and len(volume.fingerprint) == 32
    changed_voxel = volume.array.copy()
    changed_voxel[3, 4, 5] += 1
    moved = MATRIX.copy()
    moved[0, 3] += 0.001
    others = [Volume(changed_voxel, MATRIX), Volume(volume.array, moved),
              Volume(volume.array.astype(np.int32), MATRIX),  # same values, another type
              Volume(volume.array.reshape(4, 6, 5), MATRIX), Volume(volume.array.astype(np.uint16), MATRIX)]
    prints = {volume.fingerprint} | {other.fingerprint for other in others}
    assert len(prints) == 1 + len(others)
    assert Volume(np.asfortranarray(volume.array), MATRIX).fingerprint == volume.fingerprint  # memory layout aside
