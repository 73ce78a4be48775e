"""*Add to training set*: the current volume and its named segments written as one case of a training folder that
``medsam3 finetune`` (and ``medsam3 evaluate``) read: ``images/<case>.nii.gz``, ``labels/<case>.nii.gz`` and
``labels.json``.

``labels.json`` gives every segment name one label value for the whole folder (a name seen before keeps its value,
a new name gets the next one), so that cases written from different scenes agree. Labels are written on the
volume's own grid (its IJK-to-RAS without parent transforms, as the exports write them) by the engine's writer.
Nothing is overwritten: a case name already in the folder gets a number appended; overlapping or empty
segmentations are refused before anything is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsam3.errors import VolumeError
from medsam3.files.volume_io import write_labelmap
from medsam3.geometry.volume import Volume

from .segment_io import segment_mask
from .volume_nodes import local_ijk_to_ras, voxel_array

LABELS_FILE = "labels.json"


@dataclass(frozen=True)
class TrainingCase:
    case_id: str
    image: Path
    labels: Path
    segments: list[str]  # the names written, each with its folder-wide value in labels.json


def _case_id(folder: Path, name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "case"
    case_id, number = stem, 2
    while (folder / "images" / f"{case_id}.nii.gz").exists() or (folder / "labels" / f"{case_id}.nii.gz").exists():
        case_id, number = f"{stem}_{number}", number + 1
    return case_id


def _label_values(folder: Path) -> dict[str, int]:
    path = folder / LABELS_FILE
    if not path.is_file():
        return {}
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise VolumeError(f"{path} is not valid JSON ({error}): fix or remove it, then add the case again.") from None
    return {str(name): int(value) for value, name in mapping.items()}


def add_to_training_set(volume_node, segmentation_node, folder, case_name: str | None = None) -> TrainingCase:
    """Write the volume and every non-empty segment of ``segmentation_node`` as a new case of ``folder``."""
    folder = Path(folder)
    segmentation = segmentation_node.GetSegmentation() if segmentation_node is not None else None
    if segmentation is None or segmentation.GetNumberOfSegments() == 0:
        raise VolumeError("The segmentation has no segments: segment and name the structures, then add the case.")
    voxels = np.array(voxel_array(volume_node))
    labels = np.zeros(voxels.shape, dtype=np.uint16)
    values = _label_values(folder)
    written = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        name = " ".join(segmentation.GetSegment(segment_id).GetName().split())
        mask = segment_mask(segmentation_node, segment_id, volume_node)
        if not name or not mask.any():
            continue
        if (labels[mask] > 0).any():
            raise VolumeError(f"Segment '{name}' overlaps another segment: a training case gives each voxel one "
                              "structure; remove the overlap (Segment Editor, Logical operators) and add it again.")
        value = values.setdefault(name, max(values.values(), default=0) + 1)
        labels[mask] = value
        written.append(name)
    if not written:
        raise VolumeError("Every segment is empty or unnamed: nothing to add to the training set.")
    case_id = _case_id(folder, case_name or volume_node.GetName())
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    reference = Volume(voxels, local_ijk_to_ras(volume_node), name=volume_node.GetName())
    image_path, label_path = folder / "images" / f"{case_id}.nii.gz", folder / "labels" / f"{case_id}.nii.gz"
    write_labelmap(image_path, voxels, reference)
    write_labelmap(label_path, labels, reference)
    mapping = {str(value): name for name, value in sorted(values.items(), key=lambda item: item[1])}
    partial = folder / (LABELS_FILE + ".partial")
    partial.write_text(json.dumps(mapping, indent=2) + "\n", encoding="utf-8")
    partial.replace(folder / LABELS_FILE)
    return TrainingCase(case_id, image_path, label_path, written)
