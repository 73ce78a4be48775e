"""Small labelled datasets in the three formats ``medsam3 evaluate`` reads, made in a temporary folder from the
real volumes in ../shared/data (links, never copies in the repository)."""

from __future__ import annotations

import json
from pathlib import Path

from cases import data_path

TOTALSEG_SMALL_LABELS = {"background": 0, "spleen": 1, "right kidney": 2, "left kidney": 3, "gallbladder": 4,
                         "liver": 5, "stomach": 6, "pancreas": 7}


def _link(target: Path, link: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.resolve())
    return link


def nnunet_folder(root: Path) -> Path:
    """nnU-Net v2 layout: the lowest 30 slices of the TotalSegmentator example CT with its v2 organ labels."""
    folder = root / "Dataset001_TotalSegSmall"
    _link(data_path("ct/totalseg_example/ct_small.nii.gz"), folder / "imagesTr" / "totalseg_0000.nii.gz")
    _link(data_path("ct/totalseg_example/seg_small_v2.nii.gz"), folder / "labelsTr" / "totalseg.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": TOTALSEG_SMALL_LABELS,
                                                     "numTraining": 1, "file_ending": ".nii.gz"}))
    return folder


def msd_folder(root: Path) -> Path:
    """Medical Segmentation Decathlon layout (Task09_Spleen style): the spleen CT crop and its manual mask."""
    folder = root / "Task09_Spleen"
    _link(data_path("ct/spleen_msd_crop/image.nii.gz"), folder / "imagesTr" / "spleen_2.nii.gz")
    _link(data_path("ct/spleen_msd_crop/label_spleen.nii.gz"), folder / "labelsTr" / "spleen_2.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({"name": "Spleen", "modality": {"0": "CT"},
                                                     "labels": {"0": "background", "1": "spleen"}}))
    return folder


def pairs_folder(root: Path) -> Path:
    """images/ + labels/ + labels.json: the two pyradiomics MRI tumours (brain, breast)."""
    folder = root / "mri_pairs"
    for name in ("brain1", "breast1"):
        _link(data_path(f"mr/pyradiomics/{name}_image.nrrd"), folder / "images" / f"{name}.nrrd")
        _link(data_path(f"mr/pyradiomics/{name}_label.nrrd"), folder / "labels" / f"{name}.nrrd")
    (folder / "labels.json").write_text(json.dumps({"1": "tumour"}))
    return folder


def npz_folder(root: Path) -> Path:
    """The challenge's .npz format: the three DeepLesion CT lesions, with a labels.json beside them."""
    folder = root / "recist_npz"
    for path in sorted(data_path("ct/recist_lesions").glob("*.npz")):
        _link(path, folder / path.name)
    (folder / "labels.json").write_text(json.dumps({"1": "lesion"}))
    return folder
