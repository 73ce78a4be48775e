"""``medsam3 evaluate`` reads Slicer segmentations (.seg.nrrd) as label files, matching segments to label names by
name: the same figures as on the labelmap the segmentation was made from, whatever the segments' order."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

import medsam3.apps.evaluation.run as evaluation_run
from medsam3.apps.cli import main
from medsam3.files.seg_nrrd import write_seg_nrrd
from medsam3.files.volume_io import read_volume

from cases import data_path
from evaluation_examples import TOTALSEG_SMALL_LABELS

IMAGE = "ct/totalseg_example/ct_small.nii.gz"
LABELS = "ct/totalseg_example/seg_small_v2.nii.gz"
ORGANS = {value: name for name, value in TOTALSEG_SMALL_LABELS.items() if value}


def _folder(root: Path, label_name: str, labels_json: dict | None) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "images" / "totalseg.nii.gz").symlink_to(data_path(IMAGE).resolve())
    if labels_json is not None:
        (root / "labels.json").write_text(json.dumps(labels_json))
    return root / "labels" / label_name


def _figures(folder: Path, output: Path, leave_out=()) -> list[tuple]:
    assert main(["evaluate", str(folder), "--check-pipeline", "--protocols", "clicks", "--max-clicks", "2",
                 "--output", str(output), "--quiet"]) == 0
    with open(output / "results.csv", newline="", encoding="utf-8") as stream:
        rows = [{k: v for k, v in row.items() if k not in (*evaluation_run.TIMING_FIELDS, *leave_out)}
                for row in csv.DictReader(stream)]
    return sorted(tuple(sorted(row.items())) for row in rows)


def test_a_seg_nrrd_label_source_gives_the_same_dice_as_its_labelmap(tmp_path, one_torch_thread):
    labelmap = read_volume(data_path(LABELS))
    labels_json = {str(value): name for value, name in ORGANS.items()}
    from_labelmap = _folder(tmp_path / "labelmap", "totalseg.nii.gz", labels_json)
    from_labelmap.symlink_to(data_path(LABELS).resolve())

    # the same organs as segments in reverse order: segment n is not label n, only the names match
    order = sorted(ORGANS, reverse=True)
    relabelled = np.zeros(labelmap.array.shape, np.uint8)
    for number, value in enumerate(order, start=1):
        relabelled[labelmap.array == value] = number
    by_name = _folder(tmp_path / "by_name", "totalseg.seg.nrrd", labels_json)
    write_seg_nrrd(by_name, relabelled, [ORGANS[v] for v in order], labelmap)
    # without labels.json the segments name the structures
    named_by_segments = _folder(tmp_path / "segments", "totalseg.seg.nrrd", None)
    write_seg_nrrd(named_by_segments, relabelled, [ORGANS[v] for v in order], labelmap)

    expected = _figures(tmp_path / "labelmap", tmp_path / "out_labelmap")
    assert {dict(row)["structure"] for row in expected} >= {"spleen", "liver", "left kidney"}
    assert any(float(dict(row)["dice"]) > 0.9 for row in expected)
    assert _figures(tmp_path / "by_name", tmp_path / "out_by_name") == expected
    # numbered in the segments' order there: the same figures, under other label numbers
    without_numbers = [tuple(item for item in row if item[0] != "label") for row in expected]
    assert _figures(tmp_path / "segments", tmp_path / "out_segments", leave_out=("label",)) == without_numbers
