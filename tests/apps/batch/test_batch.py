"""``medsam3 batch`` on this machine, over real volumes: a NIfTI file, a NRRD file, the TotalSegmentator DICOM series
and a DICOM series with its UIDs (for the DICOM SEG), with a corrupt case in the middle.

The model is the ground-truth oracle (tests/support/batch_backends.py), prompted by clicks from a CSV in IJK and RAS: it is
fast, and its masks are not empty, so every output can be compared with what ``segment_volume`` gives directly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medsam3.apps.batch.cases import discover_cases, read_case_volume
from medsam3.apps.cli import main
from medsam3.apps.segment_pipeline import SegmentRequest, segment_volume
from medsam3.files.volume_io import ijk_to_ras_from_image

from batch_backends import bright_voxel, oracle_backend_factory
from cases import data_path

NIFTI = "ct/totalseg_example/ct_small.nii.gz"
NRRD = "mr/pyradiomics/breast1_image.nrrd"
SERIES = "ct/totalseg_example/dicom_series"
SERIES_WITH_UIDS = "ct/dcmqi_3slice/ct-3slice"


def run_batch(*arguments: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["batch", *map(str, arguments)], backend_factory=oracle_backend_factory)
    return code, out.getvalue(), err.getvalue()


def log_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "batch-log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The inputs (corrupt file in the middle), the clicks CSV, and the first run's exit code, output and log."""
    root = tmp_path_factory.mktemp("cohort")
    corrupt = root / "inputs" / "b_corrupt.nii.gz"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\x1f\x8b not really a gzip'd NIfTI")
    inputs = [data_path(NIFTI), data_path(NRRD), corrupt.parent, data_path(SERIES), data_path(SERIES_WITH_UIDS)]
    cases = {case.case_id: case for case in discover_cases(inputs)}
    rows, clicks = [], {}
    for number, (case_id, case) in enumerate(cases.items()):
        if case_id == "b_corrupt":
            rows.append({"case": "b_corrupt.nii.gz", "kind": "point", "x": 1, "y": 1, "z": 1, "space": "ijk"})
            continue
        volume = read_case_volume(case)
        ijk = bright_voxel(volume)
        clicks[case_id] = ijk
        if number % 2:  # every other case in RAS millimetres
            x, y, z = volume.ijk_to_ras_points(np.array([ijk], dtype=float))[0]
            rows.append({"case": case_id, "kind": "point", "x": x, "y": y, "z": z, "space": "ras"})
        else:
            rows.append({"case": case_id, "kind": "point", "x": ijk[0], "y": ijk[1], "z": ijk[2], "space": "ijk"})
    prompts = root / "clicks.csv"
    with open(prompts, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["case", "kind", "x", "y", "z", "space", "name"])
        writer.writeheader()
        writer.writerows({**row, "name": "liver"} for row in rows)
    output = root / "results"
    code, stdout, stderr = run_batch(*inputs, "--prompts", prompts, "--output", output)
    return {"inputs": inputs, "prompts": prompts, "output": output, "code": code, "stdout": stdout,
            "stderr": stderr, "cases": cases, "clicks": clicks, "corrupt": corrupt}


def test_corrupt_case_fails_alone_and_the_exit_code_shows_it(cohort):
    assert cohort["code"] == 1
    records = {r["case"]: r for r in log_lines(cohort["output"])}
    assert list(records) == ["ct_small", "breast1_image", "b_corrupt", "dicom_series", "ct-3slice"]
    assert records["b_corrupt"]["status"] == "failed"
    assert "corrupt" in records["b_corrupt"]["error"] and "b_corrupt.nii.gz" in records["b_corrupt"]["error"]
    assert all(records[c]["status"] == "done" for c in records if c != "b_corrupt")
    assert not (cohort["output"] / "b_corrupt").exists()
    # progress (done / left / ETA) on stderr, the summary table and the totals on stdout
    assert "[5/5]" in cohort["stderr"] and "4 left" in cohort["stderr"] and "to go" in cohort["stderr"]
    assert re.search(r"\[1/5\] ct_small: done in \d+\.\d s; 4 left, about \d:\d\d:\d\d to go", cohort["stderr"])
    assert "b_corrupt" in cohort["stdout"] and "4 done, 0 skipped (already done), 1 failed" in cohort["stdout"]


def test_every_output_has_the_input_geometry_and_the_direct_pipeline_result(cohort):
    records = {r["case"]: r for r in log_lines(cohort["output"])}
    for case_id, ijk in cohort["clicks"].items():
        case, record = cohort["cases"][case_id], records[case_id]
        volume = read_case_volume(case)
        expected = segment_volume(oracle_backend_factory(), volume,
                                  SegmentRequest(positive_points=(ijk,), coordinates_ijk=True, segment_name="liver"))
        assert expected.labels[ijk[2], ijk[1], ijk[0]] == 1  # the click landed on what the oracle segments
        folder = cohort["output"] / case_id
        for name in ("labelmap.nii.gz", "segmentation.seg.nrrd"):
            image = sitk.ReadImage(str(folder / name))
            np.testing.assert_allclose(ijk_to_ras_from_image(image), volume.ijk_to_ras, atol=1e-4)
            np.testing.assert_array_equal(sitk.GetArrayFromImage(image), expected.labels)
        assert record["segments"] == [{"name": "Liver", "voxels": int(expected.labels.sum()),
                                       "score": record["segments"][0]["score"]}]
        assert record["model"] == "ground-truth-oracle" and record["engine_version"] and record["seconds"] > 0
        assert sorted(Path(p).name for p in record["outputs"]) == sorted(p.name for p in folder.iterdir())
    assert not list(cohort["output"].rglob(".partial-*"))


def test_dicom_seg_references_the_source_series_and_holds_the_mask(cohort):
    import highdicom as hd
    import pydicom

    records = {r["case"]: r for r in log_lines(cohort["output"])}
    # the TotalSegmentator series was anonymised without UIDs: labelmap and .seg.nrrd, and the log says why no SEG
    assert not (cohort["output"] / "dicom_series" / "segmentation.dcm").exists()
    assert any("no DICOM SEG" in note and "StudyInstanceUID" in note for note in records["dicom_series"]["notes"])
    case = cohort["cases"]["ct-3slice"]
    seg = hd.seg.segread(cohort["output"] / "ct-3slice" / "segmentation.dcm")
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in case.files]
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == \
        {s.SOPInstanceUID for s in sources}
    description = seg.SegmentSequence[0]
    assert description.SegmentLabel == "Liver"
    assert description.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    volume = read_case_volume(case)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort["output"] / "ct-3slice" / "labelmap.nii.gz")))
    assert labels.any()
    pixels = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], segment_numbers=[1])
    ras_to_ijk = volume.ras_to_ijk
    for source, frame in zip(sources, pixels[..., 0]):
        position = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(source.ImagePositionPatient, float)
        k = int(round((ras_to_ijk @ np.r_[position, 1.0])[2]))
        np.testing.assert_array_equal(frame.astype(bool), labels[k] == 1)


def test_seg_nrrd_opens_in_slicer_with_names_colours_and_codes(cohort, tmp_path):
    pytest.importorskip("slicer")
    from slicer_scene import load_volume_node, new_scene

    from MedicalSAM3SlicerLib.segment_io import segment_mask
    from MedicalSAM3SlicerLib.terminology import codes_of_tag, default_table, segment_tag

    volume = read_case_volume(cohort["cases"]["breast1_image"])
    scene = new_scene()
    volume_node = load_volume_node(scene, volume, tmp_path)
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(cohort["output"] / "breast1_image" / "segmentation.seg.nrrd"))
    assert storage.ReadData(loaded)
    segment = loaded.GetSegmentation().GetNthSegment(0)
    liver = default_table().resolve("liver")
    assert segment.GetName() == "Liver"
    np.testing.assert_allclose(segment.GetColor(), liver.colour, atol=1e-3)
    category, type_, _ = codes_of_tag(segment_tag(segment))
    assert (category, type_) == (liver.category, liver.type)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort["output"] / "breast1_image" / "labelmap.nii.gz")))
    np.testing.assert_array_equal(segment_mask(loaded, loaded.GetSegmentation().GetNthSegmentID(0), volume_node),
                                  labels == 1)


def test_a_rerun_skips_what_is_done_and_runs_what_is_fixed(cohort):
    output = cohort["output"]
    before = {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file() and p.suffix != ".jsonl"}
    first_run_lines = len(log_lines(output))
    code, stdout, _ = run_batch(*cohort["inputs"], "--prompts", cohort["prompts"], "--output", output)
    assert code == 1  # the corrupt case still fails
    rerun = {r["case"]: r["status"] for r in log_lines(output)[first_run_lines:]}
    assert rerun == {"ct_small": "skipped", "breast1_image": "skipped", "b_corrupt": "failed",
                     "dicom_series": "skipped", "ct-3slice": "skipped"}
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing done was rewritten
    assert "4 skipped (already done), 1 failed" in stdout

    shutil.copyfile(data_path(NIFTI), cohort["corrupt"])  # the user replaces the corrupt file
    code, stdout, _ = run_batch(*cohort["inputs"], "--prompts", cohort["prompts"], "--output", output)
    assert code == 0
    last = {r["case"]: r["status"] for r in log_lines(output)[-5:]}
    assert last["b_corrupt"] == "done" and sum(s == "skipped" for s in last.values()) == 4
    assert (output / "b_corrupt" / "labelmap.nii.gz").is_file()


def test_a_failure_while_writing_leaves_no_file_of_the_case(tmp_path, monkeypatch):
    from medsam3.files import outputs

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "write_coded_seg_nrrd", fail)  # the third file of the case fails
    code, stdout, _ = run_batch(data_path(NRRD), "--prompts", _one_click_csv(tmp_path), "--output", tmp_path / "out")
    assert code == 1 and "No space left on device" in stdout
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == ["batch-log.jsonl"]

    # a run killed while writing leaves hidden temporary files; the next run of the case removes them
    killed = tmp_path / "out" / "breast1_image" / ".partial-0badc0de-labelmap.nii.gz"
    killed.parent.mkdir(exist_ok=True)
    killed.write_bytes(b"half a labelmap")
    monkeypatch.undo()
    code, stdout, _ = run_batch(data_path(NRRD), "--prompts", _one_click_csv(tmp_path), "--output", tmp_path / "out")
    assert code == 0 and not killed.exists()
    assert sorted(p.name for p in (tmp_path / "out" / "breast1_image").iterdir()) == [
        "labelmap.labels.csv", "labelmap.nii.gz", "segmentation.seg.nrrd"]


def _one_click_csv(folder: Path) -> Path:
    path = folder / "one.csv"
    path.write_text("case,kind,x,y,z,space\nbreast1_image,point,20,60,10,ijk\n")
    return path


def test_bad_prompts_are_refused_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("case,kind,x,y,z\nno_such_case,point,1,2,3\n")
    assert main(["batch", str(data_path(NRRD)), "--prompts", str(bad), "--output", str(tmp_path / "out")],
                backend_factory=oracle_backend_factory) == 1
    error = capsys.readouterr().err
    assert "no_such_case" in error and "breast1_image" in error and len(error.strip().splitlines()) == 1
    assert main(["batch", str(data_path(NRRD)), "--output", str(tmp_path / "out")],
                backend_factory=oracle_backend_factory) == 1
    assert "Nothing to segment" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _crop(source: Path, target: Path, k0: int, k1: int) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.ReadImage(str(source))
    sitk.WriteImage(image[:, :, k0:k1], str(target))
    return target


def test_dataset_json_cases_with_boxes_in_ras_and_ijk_and_changed_settings_rerun(tmp_path):
    """An MSD-style dataset.json (training and test images) with one box per case from the CSV, one in RAS and
    one in IJK: each result equals segment_volume with that box. Changing one case's box reruns only that case."""
    spleen = data_path("ct/spleen_msd_crop/image.nii.gz")
    a = _crop(spleen, tmp_path / "Task09" / "imagesTr" / "spleen_a.nii.gz", 8, 14)
    b = _crop(spleen, tmp_path / "Task09" / "imagesTs" / "spleen_b.nii.gz", 12, 18)
    dataset = tmp_path / "Task09" / "dataset.json"
    dataset.write_text(json.dumps({"name": "Spleen", "training": [{"image": "./imagesTr/spleen_a.nii.gz",
                                                                   "label": "./labelsTr/spleen_a.nii.gz"}],
                                   "test": ["./imagesTs/spleen_b.nii.gz"]}))
    boxes = {}
    for case_id, path in (("spleen_a", a), ("spleen_b", b)):
        volume = read_case_volume(discover_cases([path])[0])
        i, j, k = bright_voxel(volume)
        boxes[case_id] = ((i - 12, j - 12, k), (i + 12, j + 12, k))
    ras_box = read_case_volume(discover_cases([a])[0]).ijk_to_ras_points(np.array(boxes["spleen_a"], dtype=float))
    prompts = tmp_path / "boxes.csv"

    def write_csv(b_box):
        rows = ["case,kind,x,y,z,x2,y2,z2,space",
                "spleen_a.nii.gz,box," + ",".join(f"{v:.6f}" for v in ras_box.ravel()) + ",ras",
                "spleen_b,box," + ",".join(str(v) for corner in b_box for v in corner) + ",ijk"]
        prompts.write_text("\n".join(rows) + "\n")

    write_csv(boxes["spleen_b"])
    output = tmp_path / "out"
    code, stdout, stderr = run_batch(dataset, "--prompts", prompts, "--output", output)
    assert code == 0, stdout + stderr
    records = {r["case"]: r for r in log_lines(output)}
    assert list(records) == ["spleen_a", "spleen_b"] and all(r["status"] == "done" for r in records.values())
    for case_id, path in (("spleen_a", a), ("spleen_b", b)):
        volume = read_case_volume(discover_cases([path])[0])
        expected = segment_volume(oracle_backend_factory(), volume,
                                  SegmentRequest(box=boxes[case_id], coordinates_ijk=True))
        assert expected.labels.any()
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(output / case_id / "labelmap.nii.gz")))
        np.testing.assert_array_equal(labels, expected.labels)
        assert records[case_id]["input"] == str(path.resolve())

    (i0, j0, k), (i1, j1, _) = boxes["spleen_b"]
    write_csv(((i0 + 1, j0, k), (i1 + 1, j1, k)))  # the user moves one box by a voxel
    assert run_batch(dataset, "--prompts", prompts, "--output", output)[0] == 0
    rerun = {r["case"]: r["status"] for r in log_lines(output)[2:]}
    assert rerun == {"spleen_a": "skipped", "spleen_b": "done"}


@pytest.mark.parametrize("resources, device, workers, expected", [
    ({"CPU": 64.0, "GPU": 4.0}, None, None, (4, {"num_gpus": 1, "num_cpus": 1}, "cuda", None)),
    ({"CPU": 64.0, "GPU": 4.0}, "cuda:1", 2, (2, {"num_gpus": 1, "num_cpus": 1}, "cuda", None)),
    ({"CPU": 64.0, "GPU": 4.0}, "cpu", None, (16, {"num_gpus": 0, "num_cpus": 4}, "cpu", 4)),
    ({"CPU": 16.0}, None, None, (4, {"num_gpus": 0, "num_cpus": 4}, "cpu", 4)),
    ({"CPU": 2.0}, None, None, (1, {"num_gpus": 0, "num_cpus": 2}, "cpu", 2)),
])
def test_ray_workers_get_whole_gpus_when_there_are_gpus_and_cpus_otherwise(monkeypatch, resources, device, workers,
                                                                          expected):
    ray = pytest.importorskip("ray")
    from medsam3.apps.batch.ray_runner import RayPlan, _worker_options

    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    assert _worker_options(RayPlan(workers=workers), device) == expected
