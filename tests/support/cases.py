"""Real test volumes from ../shared/data (never copied into the repository) and geometric variants of them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from medsam3.geometry.volume import Volume
from medsam3.files.volume_io import read_volume

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA = PROJECT_ROOT.parent / "shared" / "data"


def data_path(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.fail(f"Test data {path} is missing: the repository expects ../shared/data beside it.")
    return path


@dataclass(frozen=True)
class Case:
    name: str
    volume: Volume
    mask: np.ndarray  # (K, J, I) bool ground truth


@lru_cache(maxsize=None)
def load_case(name: str) -> Case:
    if name == "spleen":
        volume = read_volume(data_path("ct/spleen_msd_crop/image.nii.gz"))
        mask = read_volume(data_path("ct/spleen_msd_crop/label_spleen.nii.gz")).array == 1
    elif name == "liver":
        volume = read_volume(data_path("ct/totalseg_example/ct.nii.gz"))
        mask = read_volume(data_path("ct/totalseg_example/seg_v1_104classes.nii.gz")).array.astype(np.int16) == 5
    elif name == "brats_tumour":
        folder = "mr/brats2013/brats_2013_pat0001_1"
        volume = read_volume(data_path(f"{folder}/Flair_subtrMeanDivStd.nii.gz"), modality="MR")
        mask = read_volume(data_path(f"{folder}/OTMultiClass.nii.gz")).array > 0
    else:
        raise KeyError(name)
    assert mask.shape == volume.array.shape and mask.any()
    return Case(name, volume, mask)


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def flipped(case: Case) -> Case:
    """The same anatomy at the same world positions, stored with the i and k axes reversed."""
    array = case.volume.array[::-1, :, ::-1]
    mask = case.mask[::-1, :, ::-1]
    matrix = case.volume.ijk_to_ras.copy()
    i_count, _, k_count = case.volume.shape_ijk
    matrix[:3, 3] = case.volume.ijk_to_ras_points([[i_count - 1, 0, k_count - 1]])[0]
    matrix[:3, 0] *= -1
    matrix[:3, 2] *= -1
    return Case(case.name + "-flipped", Volume(np.ascontiguousarray(array), matrix, case.volume.modality), mask)


def oblique(case: Case) -> Case:
    """Stored with permuted axes (numpy [i, k, j]) under a 20 degree oblique rotation of the world."""
    order = (2, 0, 1)  # numpy axes of the original [k, j, i] array -> new [i, k, j] layout
    array = np.ascontiguousarray(np.transpose(case.volume.array, order))
    mask = np.ascontiguousarray(np.transpose(case.mask, order))
    # New numpy layout [i, k, j] means new voxel axes (i', j', k') = (j, k, i).
    permutation = np.zeros((4, 4))
    permutation[3, 3] = 1
    permutation[1, 0] = 1  # i' = j
    permutation[2, 1] = 1  # j' = k
    permutation[0, 2] = 1  # k' = i
    matrix = case.volume.ijk_to_ras @ permutation
    rotation = np.eye(4)
    rotation[:3, :3] = _rotation(np.array([1.0, 0.5, 0.2]), 20.0)
    matrix = rotation @ matrix
    return Case(case.name + "-oblique", Volume(array, matrix, case.volume.modality), mask)


VARIANTS = {"original": lambda c: c, "flipped": flipped, "oblique": oblique}
