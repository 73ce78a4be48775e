"""``medsam3 batch --ray`` on a local two-worker Ray cluster on the CPU: the same files as a local run, byte for
byte, and a worker killed mid-run does not stop the batch."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medsam3.apps.batch.cases import discover_cases, read_case_volume
from medsam3.apps.cli import main
from medsam3.model.model_sources import resolve_model

from batch_backends import DiesOnceOnCase, bright_voxel, oracle_backend_factory
from cases import data_path

ray = pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parents[2] / "support"
ENGINE = TESTS.parents[1] / "MedicalSAM3Slicer"


@pytest.fixture(scope="module")
def ray_cluster():
    """Two CPUs, no dashboard, loopback only; workers import the engine and tests/support/batch_backends.py."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    python_path = os.pathsep.join([str(ENGINE), str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(num_cpus=2, num_gpus=0, object_store_memory=100 * 2**20, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="WARNING", runtime_env={"env_vars": {"PYTHONPATH": python_path,
                                                                "TRANSFORMERS_VERBOSITY": "error",
                                                                "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def run_batch(arguments, backend_factory=None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    options = {"backend_factory": backend_factory} if backend_factory else {}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["batch", *map(str, arguments)], **options)
    return code, out.getvalue(), err.getvalue()


def result_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "batch-log.jsonl"}


def small_cohort(folder: Path) -> list[Path]:
    """A NIfTI (6 slices of the spleen CT), a NRRD (6 slices of the breast MRI) and the 3-slice DICOM series (with
    UIDs): few slices, so that the tiny model runs through them in reasonable time on a busy CPU."""
    image = sitk.ReadImage(str(data_path("ct/spleen_msd_crop/image.nii.gz")))
    nifti = folder / "spleen_6.nii.gz"
    sitk.WriteImage(image[:, :, 10:16], str(nifti))
    breast = sitk.ReadImage(str(data_path("mr/pyradiomics/breast1_image.nrrd")))
    nrrd = folder / "breast1_image.nrrd"
    sitk.WriteImage(breast[:, :, 7:13], str(nrrd))
    return [nifti, nrrd, data_path("ct/dcmqi_3slice/ct-3slice")]


def assert_same_dicom_seg(local: Path, on_ray: Path) -> None:
    """DICOM SEGs carry fresh UIDs and a creation time; their masks, references and segments must be equal."""
    import highdicom as hd

    a, b = hd.seg.segread(local), hd.seg.segread(on_ray)
    np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
    assert a.ReferencedSeriesSequence == b.ReferencedSeriesSequence
    assert [s.SegmentLabel for s in a.SegmentSequence] == [s.SegmentLabel for s in b.SegmentSequence]


def test_a_ray_run_writes_the_same_files_as_a_local_run(ray_cluster, tmp_path, one_torch_thread):
    inputs = small_cohort(tmp_path)
    resolve_model("tiny-random")  # build the tiny models once, before two workers load them
    common = [*inputs, "--text", "liver", "--model", "tiny-random", "--device", "cpu"]
    assert run_batch([*common, "--output", tmp_path / "local"])[0] == 0
    code, stdout, stderr = run_batch([*common, "--output", tmp_path / "ray", "--ray", "--workers", "2",
                                      "--cpus-per-worker", "1"])
    assert code == 0, stdout + stderr
    assert "Ray: 2 workers (1 CPUs each" in stderr
    local, on_ray = result_files(tmp_path / "local"), result_files(tmp_path / "ray")
    assert sorted(local) == sorted(on_ray) and len(local) == 10  # 3 labelmaps + colour tables, 3 .seg.nrrd, 1 DICOM SEG
    for name in local:
        if name.endswith(".dcm"):
            assert_same_dicom_seg(tmp_path / "local" / name, tmp_path / "ray" / name)
        else:
            assert local[name] == on_ray[name], name
    workers = {json.loads(line)["worker"] for line in (tmp_path / "ray" / "batch-log.jsonl").read_text().splitlines()}
    assert all(":" in w for w in workers) and os.getpid() not in {int(w.split(":")[1]) for w in workers}


def test_a_worker_killed_mid_run_does_not_stop_the_batch(ray_cluster, tmp_path):
    inputs = small_cohort(tmp_path)
    prompts = tmp_path / "clicks.csv"
    rows = ["case,kind,x,y,z,space"]
    for case in discover_cases(inputs):  # a click on a bright voxel, so that every mask has something in it
        rows.append(f"{case.case_id},point,{','.join(map(str, bright_voxel(read_case_volume(case))))},ijk")
    prompts.write_text("\n".join(rows) + "\n")
    common = [*inputs, "--prompts", prompts]
    assert run_batch([*common, "--output", tmp_path / "local"], oracle_backend_factory)[0] == 0
    marker = tmp_path / "killed-worker.pid"
    factory = DiesOnceOnCase(marker, "breast1")
    code, stdout, stderr = run_batch([*common, "--output", tmp_path / "ray", "--ray", "--workers", "2",
                                      "--cpus-per-worker", "1"], factory)
    assert marker.exists(), "no worker was killed"
    assert code == 0, stdout + stderr
    assert "the worker running breast1_image died; the case goes to another worker" in stderr
    records = [json.loads(line) for line in (tmp_path / "ray" / "batch-log.jsonl").read_text().splitlines()]
    assert sorted(r["case"] for r in records) == ["breast1_image", "ct-3slice", "spleen_6"]
    assert all(r["status"] == "done" for r in records)
    # each worker process loaded the model once: the 2 workers, and the replacement of the killed one if it got
    # to load before the batch ended
    loads = factory.loads.read_text().split()
    assert len(loads) == len(set(loads)) and len(loads) in (2, 3)
    assert marker.read_text() in loads and str(os.getpid()) not in loads
    assert {r["worker"].split(":")[1] for r in records} <= set(loads)
    breast = next(r for r in records if r["case"] == "breast1_image")
    assert breast["worker"].split(":")[1] != marker.read_text()  # finished by another process than the killed one
    local, on_ray = result_files(tmp_path / "local"), result_files(tmp_path / "ray")
    assert sorted(local) == sorted(on_ray)
    for case in ("spleen_6", "breast1_image", "ct-3slice"):
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ray" / case / "labelmap.nii.gz"))).any(), case
    for name in local:
        if not name.endswith(".dcm"):
            assert local[name] == on_ray[name], name


_PROBE = """
import json, os, subprocess, sys
from medsam3.apps.batch.ray_runner import connect
import ray

connect("local")
gcs = ray.get_runtime_context().gcs_address

def joins(auth):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}, **auth}
    run = subprocess.run([sys.executable, "-c", "import ray; ray.init(address=%r, logging_level='ERROR'); "
                          "print('JOINED')" % gcs], env=env, capture_output=True, text=True, timeout=240)
    return "JOINED" in run.stdout

token = {"RAY_AUTH_MODE": "token"}
print(json.dumps({"no token": joins({}), "wrong token": joins({**token, "RAY_AUTH_TOKEN": "0" * 64}),
                  "this run's token": joins({**token, "RAY_AUTH_TOKEN": os.environ.get("RAY_AUTH_TOKEN", "")})}))
ray.shutdown()
"""


def test_the_local_cluster_turns_away_every_process_without_its_token(tmp_path):
    """Ray 2.60's servers listen on every interface (it cannot be held to loopback), so ``--ray`` with no address
    starts its cluster with token authentication and a fresh token that is written nowhere: a process without it
    (another user, another machine) cannot join, and a user's RAY_AUTH_MODE=disabled does not open it."""
    import subprocess
    import sys

    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(ENGINE), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    joined = json.loads(run.stdout.strip().splitlines()[-1])
    assert joined == {"no token": False, "wrong token": False, "this run's token": True}
    assert not (tmp_path / ".ray" / "auth_token").exists()  # the token is held in memory only
    assert "opt out" not in run.stderr
