"""Tests leave nothing behind outside their temporary folders, and skips are never silent.

Under CI=true a skip that this machine should not need (a required package or tool missing) fails the run,
named in the summary; skips this machine really cannot avoid (int8 kernels on ARM) are allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import conftest

TESTS = Path(__file__).resolve().parent


def run_pytest(folder: Path, ci: bool) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    environment.update(PYTHONPATH=os.pathsep.join([str(TESTS), environment.get("PYTHONPATH", "")]),
                       PYTHONDONTWRITEBYTECODE="1", **({"CI": "true"} if ci else {}))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                           "--rootdir", str(folder), str(folder)], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=300)


def test_a_skip_for_a_missing_required_package_fails_the_run_under_ci(tmp_path):
    (tmp_path / "test_needs_ray.py").write_text(
        "import pytest\n\ndef test_ray():\n    pytest.importorskip('a_package_that_is_not_installed')\n")

    under_ci = run_pytest(tmp_path, ci=True)
    locally = run_pytest(tmp_path, ci=False)

    assert under_ci.returncode == 1, under_ci.stdout
    assert "test_needs_ray.py::test_ray" in under_ci.stdout and "fail the run (CI=true)" in under_ci.stdout
    assert locally.returncode == 0, locally.stdout
    assert "would fail under CI=true" in locally.stdout


def test_only_skips_the_machine_cannot_avoid_are_allowed(monkeypatch):
    int8 = "this torch build has no x86 / fbgemm int8 kernels"
    monkeypatch.setattr(conftest.platform, "machine", lambda: "aarch64")
    assert conftest.skip_is_allowed(int8)
    monkeypatch.setattr(conftest.platform, "machine", lambda: "x86_64")
    assert not conftest.skip_is_allowed(int8)  # an x86 build without int8 kernels is a broken install
    assert not conftest.skip_is_allowed("openssl is needed to make a test certificate")
    assert not conftest.skip_is_allowed("could not import 'ray': No module named 'ray'")


def test_the_engine_cache_of_the_tests_is_a_fresh_temporary_folder(tmp_path_factory):
    """tiny-random models and converted checkpoints go to this run's temporary folder, never ~/.cache/medsam3:
    nothing saved by an older version of the code is reused."""
    from medsam3.model.model_sources import cache_directory

    cache = cache_directory()
    assert cache.is_relative_to(tmp_path_factory.getbasetemp())
    assert not cache.is_relative_to(Path.home() / ".cache")


def test_no_test_module_imports_another():
    """Shared helpers live in tests/support and shared fixtures in conftest.py: a test that imports another test
    module works only when both sit in one folder, and breaks when either moves (issue 20)."""
    import ast

    offenders = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.relative_to(TESTS)}: {name}" for name in names if name.split(".")[0].startswith("test_")]
    assert not offenders, offenders
