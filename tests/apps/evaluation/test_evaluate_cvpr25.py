"""``medsam3 evaluate --protocols cvpr25`` (issue 19): the challenge's click placement on masks where it is known
by hand (the largest 26-connected error region of missed and extra voxels together, its deepest voxel, the sign
from the ground truth, the seeded tie-break), its box, its scoring, the whole chain on a real challenge .npz with
the saved masks rescored independently (MONAI, the challenge's gate and spacing), and the text track's instance F1.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import medsam3.apps.evaluation.run as evaluation_run
from medsam3.apps.cli import main
from medsam3.apps.evaluation.cvpr25 import case_scores, challenge_box, challenge_click, click_auc
from medsam3.apps.evaluation.metrics import instance_f1

from cases import data_path
from server_harness import oracle_backend_factory

LESION = "ct/recist_lesions/CT_Lesion_000002_03_01_035-047.npz"  # 13 x 512 x 512, one lesion


def _official_tie_break(candidates: int) -> int:
    """The index the challenge's ``sample_coord`` picks among ``candidates`` equally deep voxels (raster order):
    it seeds NumPy's global generator with 42 and draws ``np.random.choice``."""
    state = np.random.get_state()
    try:
        np.random.seed(42)
        return int(np.random.choice(candidates))
    finally:
        np.random.set_state(state)


# --- the click, known by hand --------------------------------------------------------------------------------------
def test_the_click_answers_the_largest_26_connected_error_region():
    truth = np.zeros((10, 20, 20), bool)
    prediction = truth.copy()
    prediction[1:3, 1:3, 1:3] = True  # two 2 x 2 x 2 cubes touching only at a corner: one 16-voxel region
    prediction[3:5, 3:5, 3:5] = True  # in 26-connectivity (two regions of 8 in 6-connectivity)
    prediction[6:8, 10:13, 10:12] = True  # 12 voxels: the largest region if corners did not connect
    click = challenge_click(truth, prediction)
    assert click.component_voxels == 16 and not click.positive  # extra voxels: a negative click
    # every voxel of a 2-voxel-thick cube is 1 voxel deep: 16 ties, in raster order the first cube's 8 first
    first_cube = [(z, y, x) for z in (1, 2) for y in (1, 2) for x in (1, 2)]
    second_cube = [(z, y, x) for z in (3, 4) for y in (3, 4) for x in (3, 4)]
    assert click.zyx == (first_cube + second_cube)[_official_tie_break(16)] == (2, 2, 1)


@pytest.mark.parametrize("larger", ["missed", "extra"])
def test_missed_and_extra_voxels_form_one_region_and_the_sign_is_the_ground_truth_at_the_click(larger):
    block = np.zeros((10, 20, 20), bool)
    block[2:8, 4:14, 4:14] = True  # 6 x 10 x 10
    layer = np.zeros_like(block)
    layer[2:8, 14, 4:14] = True  # one voxel thick, touching the block: together a 6 x 11 x 10 box
    other = np.zeros_like(block)
    other[2:8, 16:19, 15:19] = True  # a correct part of the object far from the error
    if larger == "missed":
        truth, prediction = block | other, layer | other
    else:
        truth, prediction = layer | other, block | other
    click = challenge_click(truth, prediction)
    assert click.component_voxels == 6 * 11 * 10
    # depth in the 6 x 11 x 10 box (z 2-7, y 4-14, x 4-13) is at most 3, reached at z 4-5, y 6-12, x 6-11
    deepest = [(z, y, x) for z in (4, 5) for y in range(6, 13) for x in range(6, 12)]
    assert click.zyx == deepest[_official_tie_break(len(deepest))] == (5, 7, 9)
    assert click.positive == (larger == "missed") == bool(truth[click.zyx])


def test_the_image_edge_counts_as_outside_the_error_region():
    truth = np.zeros((9, 9, 9), bool)
    truth[0:5, 0:5, 0:5] = True  # missed entirely, in the image's corner
    click = challenge_click(truth, np.zeros_like(truth))
    assert click.zyx == (2, 2, 2) and click.positive  # the centre, not the corner voxel 5 from any background
    assert challenge_click(truth, truth.copy()) is None  # nothing left to correct


def test_the_box_is_the_middle_labelled_slice_with_a_seeded_margin_and_the_z_range():
    truth = np.zeros((12, 512, 512), bool)
    truth[3, 100:110, 200:230] = True
    truth[4:9, 90:150, 180:260] = True
    truth[9, 95:100, 190:195] = True
    z_mid = int(np.nonzero(truth)[0][truth.sum() // 2])  # the middle foreground voxel in array order
    assert z_mid == 6
    margin = 2 * np.random.RandomState(2025).randint(0, 6)  # 0-5 px scaled by 512 / 256
    box = challenge_box(truth, np.random.RandomState(2025))
    assert (box.z_min, box.z_max, box.z_mid) == (3, 9, 6)
    assert (box.y_min, box.y_max, box.x_min, box.x_max) == (90 - margin, 149 + margin, 180 - margin, 259 + margin)


def test_case_scores_average_the_classes_and_drop_nsd_at_dice_0_2_and_the_auc_covers_the_click_steps():
    high = case_scores([{"dice": 0.9, "nsd": 0.8, "nsd_geometric": 0.7}, {"dice": 0.5, "nsd": 0.4,
                                                                          "nsd_geometric": 0.3}])
    assert high == pytest.approx({"dice": 0.7, "nsd": 0.6, "nsd_geometric": 0.5})
    low = case_scores([{"dice": 0.3, "nsd": 0.9, "nsd_geometric": 0.9}, {"dice": 0.1, "nsd": 0.5,
                                                                         "nsd_geometric": 0.5}])
    assert low["dice"] == pytest.approx(0.2) and low["nsd"] == 0.0 and low["nsd_geometric"] == 0.0
    steps = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # box, then clicks 1-5: the box is left out of the area
    assert click_auc(steps) == pytest.approx((0.6 + 0.7) / 2 + (0.7 + 0.8) / 2 + (0.8 + 0.9) / 2 + (0.9 + 1.0) / 2)


# --- the whole chain on a real challenge .npz, the saved masks rescored independently ------------------------------
def _nsd_by_monai(truth, prediction, spacing) -> float:
    import torch
    from monai.metrics import compute_surface_dice

    def one_hot(mask):
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))

    return float(compute_surface_dice(one_hot(prediction), one_hot(truth), [2.0], spacing=list(spacing),
                                      use_subvoxels=True)[0, 0])


def _rescore(gts: np.ndarray, segs: np.ndarray, spacing) -> tuple[float, float]:
    """The challenge's figures of one step: class means, NSD 0 when the mean Dice is <= 0.2."""
    classes = [c for c in np.unique(gts) if c != 0]
    dices = [2 * np.sum((gts == c) & (segs == c)) / (np.sum(gts == c) + np.sum(segs == c)) for c in classes]
    if np.mean(dices) <= 0.2:
        return float(np.mean(dices)), 0.0
    return float(np.mean(dices)), float(np.mean([_nsd_by_monai(gts == c, segs == c, spacing) for c in classes]))


class _Off:
    """The pipeline check's model with every mask moved one slice and four columns: an imperfect model."""

    def __init__(self, backend):
        self.backend, self.prompts = backend, 0

    def info(self):
        return self.backend.info()

    def open_session(self, volume, preprocessing=None):
        return _OffSession(self.backend.open_session(volume, preprocessing), self)


class _OffSession:
    def __init__(self, session, owner):
        self.session, self.owner = session, owner

    def __getattr__(self, name):
        return getattr(self.session, name)

    def add_prompt(self, *args, **kwargs):
        self.owner.prompts += 1
        return self.session.add_prompt(*args, **kwargs)

    def mask(self, object_id):
        return np.roll(self.session.mask(object_id), (1, 4), axis=(0, 2))


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_cvpr25_with_saved_masks_on_a_challenge_npz_rescores_to_the_csv(tmp_path, monkeypatch):
    source = data_path(LESION)
    folder = tmp_path / "lesions"
    folder.mkdir()
    (folder / source.name).symlink_to(source)
    models = []

    def off_model():
        models.append(_Off(real()))
        return models[-1]

    real = evaluation_run.pipeline_check_backend
    monkeypatch.setattr(evaluation_run, "pipeline_check_backend", off_model)
    output = tmp_path / "out"
    # no label names: cvpr25 alone scores the label values present, as the challenge does
    assert main(["evaluate", str(folder), "--protocol", "cvpr25", "--save-masks", "--check-pipeline",
                 "--output", str(output), "--quiet"]) in (0, 1)
    assert models[0].prompts == 6  # box + 5 clicks, the model run at every step
    with np.load(source, allow_pickle=False) as stored:
        gts, spacing = stored["gts"], stored["spacing"]
    rows = [r for r in _rows(output / "results.csv") if r["protocol"] == "cvpr25"]
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    rescored, rescored_true = [], []
    for row in rows:
        with np.load(output / "masks" / source.stem / f"step{row['step']}.npz", allow_pickle=False) as saved:
            segs = saved["segs"]
        assert segs.shape == gts.shape and segs.dtype == gts.dtype and set(np.unique(segs)) <= {0, 1}
        dsc, nsd = _rescore(gts, segs, spacing)  # the .npz spacing as stored, onto (D, H, W)
        _, nsd_true = _rescore(gts, segs, spacing[::-1])
        assert float(row["dice"]) == pytest.approx(dsc, abs=1e-4)
        assert float(row["nsd"]) == pytest.approx(nsd, abs=1e-4)
        assert float(row["nsd_geometric"]) == pytest.approx(nsd_true, abs=1e-4)
        rescored.append((dsc, nsd))
        rescored_true.append(nsd_true)
    assert 0.2 < rescored[0][0] < 0.95 and rescored[0][1] != pytest.approx(rescored_true[0], abs=1e-3)
    case = json.loads((output / "summary.json").read_text())["cvpr25"]["per_case"][0]
    assert case["DSC_AUC"] == pytest.approx(np.trapezoid([d for d, _ in rescored[1:]]), abs=1e-4)
    assert case["NSD_AUC"] == pytest.approx(np.trapezoid([n for _, n in rescored[1:]]), abs=1e-4)
    assert (case["DSC_Final"], case["NSD_Final"]) == pytest.approx(rescored[-1], abs=1e-4)
    assert case["classes"] == 1 and case["seconds_limit"] == 90
    report = (output / "report.md").read_text()
    assert "| CaseName | num_class | DSC_AUC | NSD_AUC | DSC_Final | NSD_Final |" in report


def _synthetic_pairs(folder: Path, names: dict, cases: int = 1) -> Path:
    """Small CTs with two bright blocks (the image is the label drawn as intensity)."""
    for n in range(cases):
        labels = np.zeros((8, 28, 30), np.uint8)
        labels[1:6, 3 + n:12 + n, 4:13] = 1
        labels[2:7, 15:25, 16:27 - n] = 2
        for kind, array in (("images", np.where(labels > 0, 1000, -1000).astype(np.int16)), ("labels", labels)):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((0.8, 0.8, 2.5))
            image.SetOrigin((10.0, -4.0, 3.0))
            (folder / kind).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(image, str(folder / kind / f"case{n}.nii.gz"))
    (folder / "labels.json").write_text(json.dumps(names))
    return folder


def test_saved_masks_of_other_inputs_are_labelmaps_on_the_image_grid(tmp_path):
    data = _synthetic_pairs(tmp_path / "data", {"1": "left block", "2": "right block"})
    output = tmp_path / "out"
    assert main(["evaluate", str(data), "--protocols", "cvpr25", "--save-masks", "--output", str(output),
                 "--quiet"], oracle_backend_factory) == 0
    image = sitk.ReadImage(str(data / "images" / "case0.nii.gz"))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "labels" / "case0.nii.gz")))
    rows = {r["step"]: r for r in _rows(output / "results.csv") if r["protocol"] == "cvpr25"}
    for step in range(1, 7):
        saved = sitk.ReadImage(str(output / "masks" / "case0" / f"step{step}.nii.gz"))
        assert saved.GetOrigin() == image.GetOrigin() and saved.GetSpacing() == image.GetSpacing()
        segs = sitk.GetArrayFromImage(saved)
        assert float(rows[str(step)]["dice"]) == pytest.approx(_rescore(truth, segs, (2.5, 0.8, 0.8))[0], abs=1e-4)


def test_a_stopped_cvpr25_run_resumes_to_the_same_figures(tmp_path, monkeypatch):
    data = _synthetic_pairs(tmp_path / "data", {"1": "left block", "2": "right block"}, cases=2)
    arguments = ["evaluate", str(data), "--protocols", "clicks,cvpr25", "--max-clicks", "1", "--quiet"]
    assert main(arguments + ["--output", str(tmp_path / "whole")], oracle_backend_factory) == 0
    real, ran = evaluation_run.evaluate_cvpr25_case, []

    def stopped_at_the_second_case(backend, case, *rest):
        if ran:
            raise KeyboardInterrupt
        ran.append(case.case_id)
        return real(backend, case, *rest)

    monkeypatch.setattr(evaluation_run, "evaluate_cvpr25_case", stopped_at_the_second_case)
    assert main(arguments + ["--output", str(tmp_path / "resumed")], oracle_backend_factory) == 130
    monkeypatch.setattr(evaluation_run, "evaluate_cvpr25_case", real)
    assert main(arguments + ["--output", str(tmp_path / "resumed")], oracle_backend_factory) == 0

    def figures(folder):
        return [(r["case"], r["structure"], r["protocol"], r["step"], r["prompt"], r["dice"], r["nsd"],
                 r["nsd_geometric"]) for r in _rows(tmp_path / folder / "results.csv")]

    assert figures("resumed") == figures("whole") and any(f[2] == "cvpr25" for f in figures("whole"))


def test_save_masks_without_cvpr25_is_refused_in_one_line(tmp_path, capsys):
    data = _synthetic_pairs(tmp_path / "data", {"1": "left block", "2": "right block"})
    assert main(["evaluate", str(data), "--protocols", "clicks", "--save-masks", "--output", str(tmp_path / "o"),
                 "--quiet"], oracle_backend_factory) != 0
    assert "add cvpr25 to --protocols" in capsys.readouterr().err


# --- the text track's instance F1 ----------------------------------------------------------------------------------
def test_instance_f1_matches_lesions_one_to_one_at_iou_0_5():
    truth = np.zeros((6, 30, 30), bool)
    truth[1:4, 2:8, 2:8] = True  # lesion A
    truth[1:4, 12:18, 2:8] = True  # lesion B
    truth[1:4, 2:8, 20:28] = True  # lesion C
    prediction = np.zeros_like(truth)
    prediction[1:4, 2:8, 2:8] = True  # A exactly: IoU 1
    prediction[1:4, 12:15, 2:5] = True  # a quarter of B: IoU 0.25, no match
    prediction[1:3, 24:29, 24:29] = True  # nothing there: a false positive
    result = instance_f1(truth, prediction)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 2, 2)
    assert result["f1"] == pytest.approx(1 / 3) and result["dice_tp"] == pytest.approx(1.0)
    merged = np.zeros_like(truth)
    merged[1:4, 2:18, 2:8] = True  # one piece over A and B: IoU 72 / (72 + 72 + 108) < 0.5 with each
    assert instance_f1(truth, merged)["tp"] == 0 and instance_f1(truth, merged)["f1"] == 0.0
    assert instance_f1(truth, truth)["f1"] == 1.0
    assert instance_f1(truth, np.zeros_like(truth))["f1"] == 0.0  # nothing predicted


# --- issue 18 L-3 / L-4: names from the data cannot become formulas or markup ------------------------------------
def test_hostile_label_names_stay_text_in_the_csv_and_the_report(tmp_path):
    formula, markup = '=HYPERLINK("http://example.invalid","x")', "<img src=x onerror=alert(1)>|**bold**"
    data = _synthetic_pairs(tmp_path / "data", {"1": formula, "2": markup})
    output = tmp_path / "out"
    assert main(["evaluate", str(data), "--protocols", "clicks,box", "--max-clicks", "1", "--output", str(output),
                 "--quiet"], oracle_backend_factory) == 0
    with open(output / "results.csv", newline="", encoding="utf-8") as stream:
        cells = [cell for row in csv.reader(stream) for cell in row]
    assert "'" + formula.replace(",", " ") in cells or "'" + formula in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    report = (output / "report.md").read_text(encoding="utf-8")
    assert "<img" not in report and "&lt;img" in report and "**bold**" not in report
    table = [line for line in report.splitlines() if line.startswith("| ") and "block" not in line]
    header = next(line for line in table if line.startswith("| structure"))
    for line in (line for line in table if "onerror" in line):
        unescaped = line.replace("\\|", "")
        assert unescaped.count("|") == header.count("|")  # the name stays in its cell


def test_the_text_row_of_a_structure_of_several_lesions_gets_the_instance_f1(tmp_path):
    """The stand-in model answers any typed name with every bright region: for "lesion" (two pieces) it finds both
    and the "cyst" too, one false positive: P = 2/3, R = 1, F1 = 0.8; the cyst (one piece) gets no instance F1."""
    labels = np.zeros((8, 40, 40), np.uint8)
    labels[1:6, 3:12, 4:13] = 1
    labels[2:7, 25:35, 4:14] = 1
    labels[2:7, 15:25, 25:36] = 2
    for kind, array in (("images", np.where(labels > 0, 1000, -1000).astype(np.int16)), ("labels", labels)):
        (tmp_path / "data" / kind).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "data" / kind / "case0.nii.gz"))
    (tmp_path / "data" / "labels.json").write_text(json.dumps({"1": "lesion", "2": "cyst"}))
    output = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "data"), "--protocols", "text", "--output", str(output), "--quiet"],
                oracle_backend_factory) == 0
    rows = {r["structure"]: r for r in _rows(output / "results.csv")}
    assert float(rows["lesion"]["instance_f1"]) == pytest.approx(0.8) and rows["cyst"]["instance_f1"] == ""
    summary = json.loads((output / "summary.json").read_text())
    assert summary["structures"]["lesion"]["text"]["instance_f1_mean"] == pytest.approx(0.8)
