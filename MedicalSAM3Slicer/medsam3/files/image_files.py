"""Which files are images, and which folders are labelled data sets: said once for ``medsam3 batch`` (what to
segment) and ``medsam3 evaluate`` (what to measure on)."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")  # the single-file and header formats read
SEGMENTATION_SUFFIXES = (".seg.nrrd",)  # Slicer segmentations: not images
DATA_SET_DESCRIPTION = "dataset.json"
DATA_SET_IMAGES = ("imagesTr", "imagesTs")  # nnU-Net / Medical Segmentation Decathlon layout
DATA_SET_LABELS = ("labelsTr", "labelsTs")


def is_image_file(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(IMAGE_SUFFIXES) and not name.endswith(SEGMENTATION_SUFFIXES) and not name.startswith(".")


def image_stem(path: str | Path) -> str:
    """The file name without its image suffix (``case_001.nii.gz`` -> ``case_001``)."""
    name = Path(path).name
    suffix = next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), None)
    return name[:-len(suffix)] if suffix else Path(path).stem


def is_data_set(folder: str | Path) -> bool:
    """An nnU-Net / MSD folder: ``dataset.json`` beside ``imagesTr`` (its ``labelsTr`` are ground truth)."""
    folder = Path(folder)
    return (folder / DATA_SET_DESCRIPTION).is_file() and any((folder / name).is_dir() for name in DATA_SET_IMAGES)
