"""`pip install .` gives a medsam3 that runs: pyproject.toml declares what the engine imports, in ranges that hold
the releases the suite is pinned to (requirements/*.txt), with one version (medsam3.__version__).

The install test builds an empty virtual environment (no system site packages) and installs a copy of the
repository into it with pip as this machine configures it (its local package folders, then PyPI), the pins as
constraints: nothing but pyproject's declared dependencies can make `medsam3 segment` work there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import medsam3
from medsam3.errors import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS_FILES = {"server": "server.txt", "ray": "ray.txt", "evaluation": "evaluation.txt", "dicom": "dicom.txt",
                "finetune": "finetune.txt"}


def _pins(*files: str) -> dict[str, str]:
    pins = {}
    for name in files:
        for line in (ROOT / "requirements" / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                requirement = Requirement(line)
                pins[canonicalize_name(requirement.name)] = next(iter(requirement.specifier)).version
    return pins


PIN_FILES = ("engine.txt", "torch.txt", *EXTRAS_FILES.values())


def test_every_declared_dependency_holds_its_pinned_release():
    project = PYPROJECT["project"]
    pins = _pins(*PIN_FILES)
    core = {canonicalize_name(Requirement(text).name) for text in project["dependencies"]}
    groups = {"": (project["dependencies"], ("engine.txt", "torch.txt"))}
    groups.update({extra: (project["optional-dependencies"][extra], (file,)) for extra, file in EXTRAS_FILES.items()})
    for extra, (declared, files) in groups.items():
        declared = [Requirement(text) for text in declared]
        for requirement in declared:
            name = canonicalize_name(requirement.name)
            if name == "packaging":  # not pinned: it comes with transformers
                continue
            assert name in pins, f"{requirement.name} [{extra}] is declared in pyproject.toml but pinned nowhere"
            assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside pyproject's {requirement}"
        undeclared = set(_pins(*files)) - {canonicalize_name(r.name) for r in declared} - core
        assert not undeclared, f"pinned in requirements/{files[0]} but not declared in pyproject [{extra}]: {undeclared}"


def test_the_extras_a_command_names_are_pyprojects():
    """medsam3.errors.EXTRAS (what `medsam3 serve` and the others say to install when a package is missing) holds
    the import names of pyproject's extras, no more and no fewer."""
    declared = {extra: {canonicalize_name(Requirement(text).name).replace("-", "_") for text in requirements}
                for extra, requirements in PYPROJECT["project"]["optional-dependencies"].items()}
    assert {extra: set(packages) for extra, packages in EXTRAS.items()} == declared


def test_the_version_is_written_once(tmp_path):
    assert PYPROJECT["project"]["dynamic"] == ["version"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "medsam3.__version__"}
    cmake = (ROOT / "CMakeLists.txt").read_text()
    # the extension's CMake reads the same line with this regular expression
    pattern = re.search(r'REGEX "([^"]+)"', cmake).group(1)
    line = next(text for text in (ROOT / "MedicalSAM3Slicer/medsam3/__init__.py").read_text().splitlines()
                if re.search(pattern, text))
    assert re.search(r'"([^"]+)"', line).group(1) == medsam3.__version__
    assert "project(MedicalSAM3Slicer VERSION ${MEDSAM3_VERSION})" in cmake


def _copy_of_the_package_sources(target: Path) -> Path:
    """pip builds in the source folder: install a copy, so that nothing is written into the repository."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, target / name)
    shutil.copytree(ROOT / "MedicalSAM3Slicer" / "medsam3", target / "MedicalSAM3Slicer" / "medsam3",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _small_ct(path: Path) -> Path:
    array = np.full((6, 40, 48), -900, np.int16)
    array[1:5, 10:30, 12:36] = 60
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((12.0, -40.0, 7.5))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def empty_venv(tmp_path):
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(environment)
    yield environment
    shutil.rmtree(environment, ignore_errors=True)  # about 6 GB with torch: not kept with the test's other files


@pytest.mark.slow
@pytest.mark.packaging
def test_pip_install_into_an_empty_venv_gives_a_working_medsam3_segment(empty_venv, tmp_path):
    source = _copy_of_the_package_sources(tmp_path / "source")
    constraints = tmp_path / "pins.txt"  # the tested releases; constraints add no package
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in _pins(*PIN_FILES).items()))
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    environment.update(HF_HOME=str(tmp_path / "hf"), MEDSAM3_CACHE=str(tmp_path / "medsam3-cache"),
                       PIP_DISABLE_PIP_VERSION_CHECK="1")
    python = empty_venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints), str(source)],
                               capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    medsam3_command = empty_venv / "bin" / "medsam3"

    def run(*arguments):
        return subprocess.run([str(medsam3_command), *map(str, arguments)], capture_output=True, text=True,
                              env=environment, cwd=tmp_path, timeout=900)

    helped = run("--help")
    assert helped.returncode == 0 and "segment" in helped.stdout, helped.stderr
    assert run("--version").stdout.strip() == f"medsam3 {medsam3.__version__}"
    located = subprocess.run([str(python), "-c", "import medsam3; print(medsam3.__file__)"], capture_output=True,
                             text=True, env=environment, cwd=tmp_path)
    assert Path(located.stdout.strip()).is_relative_to(empty_venv), located.stdout  # not this checkout's copy

    image = _small_ct(tmp_path / "ct.nii.gz")
    output = tmp_path / "out" / "mask.nii.gz"
    segmented = run("segment", image, "--model", "tiny-random", "--device", "cpu", "--point", "24,20,2", "--ijk",
                    "-o", output)
    assert segmented.returncode == 0, segmented.stderr[-3000:]
    assert output.is_file()
    mask, reference = sitk.ReadImage(str(output)), sitk.ReadImage(str(image))
    assert mask.GetSize() == reference.GetSize()
    np.testing.assert_allclose(mask.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(mask.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(mask.GetDirection(), reference.GetDirection(), atol=1e-6)
    assert "wrote" in segmented.stdout
