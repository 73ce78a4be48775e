"""Small labelled data sets for ``medsam3 finetune`` tests, cut from the TotalSegmentator CT in ../shared/data and
written under a test's tmp_path (never into the repository).

``write_ct_cases(folder, count)``: ``count`` cases, case ``n`` holding every ``count``-th axial slice of the
abdomen (z 60..111) from slice ``60 + n``, with labels 1 liver and 2 spleen, as a folder with images/, labels/ and
labels.json (one of the formats ``medsam3 evaluate`` reads). The cases come from one patient, interleaved: the
held-out case is unseen slices of a seen body, which is what a tiny model can learn in a test's minute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cases import data_path

LABELS = {1: 5, 2: 1}  # our value: TotalSegmentator v1 value (liver, spleen)
NAMES = {"1": "liver", "2": "spleen"}
FIRST, END = 60, 112


def _image(array: np.ndarray, reference: sitk.Image, z_step: int, first: int) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    spacing = reference.GetSpacing()
    image.SetSpacing((spacing[0], spacing[1], spacing[2] * z_step))
    image.SetDirection(reference.GetDirection())
    image.SetOrigin(reference.TransformIndexToPhysicalPoint((0, 0, first)))
    return image


def write_ct_cases(folder: Path, count: int = 5, names: dict | None = None) -> Path:
    ct = sitk.ReadImage(str(data_path("ct/totalseg_example/ct.nii.gz")))
    segmentation = sitk.ReadImage(str(data_path("ct/totalseg_example/seg_v1_104classes.nii.gz")))
    voxels = sitk.GetArrayFromImage(ct).astype(np.int16)
    source_labels = sitk.GetArrayFromImage(segmentation).astype(np.int16)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for case in range(count):
        rows = list(range(FIRST + case, END, count))
        labels = np.zeros((len(rows), *voxels.shape[1:]), dtype=np.int16)
        for ours, theirs in LABELS.items():
            labels[source_labels[rows] == theirs] = ours
        sitk.WriteImage(_image(voxels[rows], ct, count, rows[0]), str(folder / "images" / f"case{case}.nii.gz"))
        sitk.WriteImage(_image(labels, ct, count, rows[0]), str(folder / "labels" / f"case{case}.nii.gz"))
    (folder / "labels.json").write_text(json.dumps(names or NAMES))
    return folder
