"""A 3D image as the engine sees it: a numpy array plus its voxel-to-world (IJK-to-RAS) geometry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import VolumeError

MODALITIES = ("CT", "MR", "OT")
# RAS (Slicer, the engine) <-> LPS (DICOM, ITK, NRRD's ijkToLPS): a sign flip of x and y, its own inverse
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_EXACT_INTEGER_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)


def _refuse_non_finite_voxels(array: np.ndarray) -> None:
    """The engine's one decision about NaN and infinite voxels: a volume with any is refused, in every transport
    (file, Slicer, server upload), because no window or model input can represent them and silently replacing
    them would change what the radiologist sees."""
    if array.dtype.kind not in "fc" or (np.isfinite(array.min()) and np.isfinite(array.max())):
        return
    bad_slices = [k for k in range(array.shape[0]) if not np.isfinite(array[k]).all()]
    count = sum(int((~np.isfinite(array[k])).sum()) for k in bad_slices)
    raise VolumeError(f"The volume has {count:,} NaN or infinite voxels (in {len(bad_slices)} of its "
                      f"{array.shape[0]} slices, k {bad_slices[0]} to {bad_slices[-1]}); the model cannot read them. "
                      "Replace them with the background value (e.g. numpy.nan_to_num) and load it again.")


def smallest_exact_dtype(array: np.ndarray) -> np.dtype:
    """The smallest voxel type that holds every value of ``array`` exactly (integers as integers, float64 as
    float32 when nothing is lost). Scans slice by slice, so it needs no second copy of the volume."""
    if array.dtype == bool or array.size == 0:
        return array.dtype
    low, high = array.min(), array.max()
    integral = array.dtype.kind in "iu" or (
        array.dtype.kind == "f" and np.isfinite(low) and np.isfinite(high)
        and all(np.array_equal(part, np.floor(part)) for part in array))
    if integral:
        for candidate in _EXACT_INTEGER_TYPES:
            limits = np.iinfo(candidate)
            if limits.min <= low and high <= limits.max:
                return np.dtype(candidate) if np.dtype(candidate).itemsize < array.dtype.itemsize else array.dtype
    if array.dtype == np.float64 and all(np.array_equal(part.astype(np.float32), part) for part in array):
        return np.dtype(np.float32)
    return array.dtype


def compact_voxels(array: np.ndarray) -> np.ndarray:
    """``array`` in :func:`smallest_exact_dtype` (the same array when it already is)."""
    dtype = smallest_exact_dtype(array)
    return array if dtype == array.dtype else array.astype(dtype)


@dataclass(frozen=True, eq=False)
class Volume:
    """A scalar volume.

    ``array`` is indexed ``array[k, j, i]`` (the layout of ``slicer.util.arrayFromVolume`` and
    ``SimpleITK.GetArrayFromImage``); voxel coordinates are written ``(i, j, k)``. ``ijk_to_ras`` maps
    homogeneous voxel coordinates to world RAS millimetres, voxel centres at integer coordinates.
    The engine never writes into ``array``.
    """

    array: np.ndarray
    ijk_to_ras: np.ndarray
    modality: str = "CT"
    name: str = ""
    _fingerprint: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise VolumeError(f"A volume must be 3D; got an array of shape {self.array.shape}. "
                              "Load a single-component scalar volume.")
        if min(self.array.shape) < 1:
            raise VolumeError(f"The volume is empty (shape {self.array.shape}).")
        if not (np.issubdtype(self.array.dtype, np.number) or self.array.dtype == bool):
            raise VolumeError(f"Voxel type {self.array.dtype} is not numeric.")
        _refuse_non_finite_voxels(self.array)
        matrix = np.asarray(self.ijk_to_ras, dtype=np.float64)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise VolumeError("The IJK-to-RAS matrix must be a finite 4x4 matrix.")
        if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
            raise VolumeError("The IJK-to-RAS matrix is singular (a spacing is zero): fix the image header.")
        object.__setattr__(self, "ijk_to_ras", matrix)
        if self.modality not in MODALITIES:
            raise VolumeError(f"Unknown modality {self.modality!r}; use one of {', '.join(MODALITIES)}.")

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k."""
        k, j, i = self.array.shape
        return i, j, k

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in millimetres along i, j, k."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def directions(self) -> np.ndarray:
        """Unit RAS direction of the i, j, k axes, as columns."""
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def ras_to_ijk(self) -> np.ndarray:
        return np.linalg.inv(self.ijk_to_ras)

    def ras_to_ijk_points(self, ras: np.ndarray) -> np.ndarray:
        """Continuous voxel coordinates (i, j, k) of RAS points, shape (N, 3)."""
        ras = np.atleast_2d(np.asarray(ras, dtype=np.float64))
        homogeneous = np.c_[ras, np.ones(len(ras))]
        return (homogeneous @ self.ras_to_ijk.T)[:, :3]

    def ijk_to_ras_points(self, ijk: np.ndarray) -> np.ndarray:
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        homogeneous = np.c_[ijk, np.ones(len(ijk))]
        return (homogeneous @ self.ijk_to_ras.T)[:, :3]

    def contains_ijk(self, ijk: np.ndarray) -> np.ndarray:
        """Whether continuous voxel coordinates fall inside the volume (within half a voxel of a centre)."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        upper = np.asarray(self.shape_ijk, dtype=np.float64) - 0.5
        return np.all((ijk >= -0.5) & (ijk < upper), axis=1)

    @property
    def fingerprint(self) -> str:
        """A digest of voxels and geometry; equal volumes share cached embeddings."""
        if not self._fingerprint:
            digest = hashlib.blake2b(digest_size=16)
            digest.update(str((self.array.shape, self.array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(self.array).view(np.uint8).reshape(-1).data)
            digest.update(self.ijk_to_ras.tobytes())
            self._fingerprint.append(digest.hexdigest())
        return self._fingerprint[0]
