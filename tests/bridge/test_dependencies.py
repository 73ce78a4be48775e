"""What 'Install dependencies' installs, given what Slicer's Python already has (plain Python, no Slicer).

Slicer 5.10's own packages come from its SuperBuild (External_python-scipy.cmake: scipy 1.13.1,
External_python-dicom-requirements.cmake: pydicom 2.4.4 and pillow 11.2.1, External_python-numpy.cmake: numpy
2.0.2, ...). They must be accepted as they are and never reinstalled.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from MedicalSAM3SlicerLib import dependencies

from slicer_versions import OURS, SLICER_5_10, versions


def names(requirements) -> set[str]:
    return {dependencies.canonicalize_name(r.name) for r in requirements}


def test_on_a_fresh_slicer_5_10_only_the_missing_packages_are_installed_and_slicers_own_are_kept():
    plan = dependencies.plan_installation(version_of=versions(SLICER_5_10))
    assert names(plan.torch) == {"torch", "torchvision"}
    assert names(plan.pip) == OURS  # nothing Slicer ships: no scipy, pydicom, numpy, pillow, SimpleITK
    assert not plan.blocked and plan.slicer_too_old == []
    constraints = plan.constraints()
    for pin in ("scipy==1.13.1", "pydicom==2.4.4", "numpy==2.0.2", "pillow==11.2.1", "simpleitk==2.5.2",
                "requests==2.32.3", "packaging==25.0"):
        assert pin in constraints
    assert "stay as they are" in plan.describe() and "Install now?" in plan.describe()


def test_an_interrupted_install_resumes_with_what_is_still_missing():
    present = {**SLICER_5_10, "torch": "2.14.1+cu130", "torchvision": "0.29.1", "transformers": "5.23.0",
               "huggingface_hub": "2.4.0", "tokenizers": "0.23.3", "safetensors": "0.8.0",
               "tqdm": "4.99.0"}  # another extension's newer tqdm is fine and kept
    plan = dependencies.plan_installation(version_of=versions(present))
    assert plan.torch == [] and names(plan.pip) == {"psutil", "httpx"}
    everything = {**present, "psutil": "7.2.2", "httpx": "0.28.1"}
    assert dependencies.plan_installation(version_of=versions(everything)).nothing_to_do


def test_a_too_old_slicer_package_is_reported_never_replaced():
    older = {**SLICER_5_10, "scipy": "1.10.1", "numpy": "1.26.4"}
    plan = dependencies.plan_installation(version_of=versions(older))
    assert {r.name for r, _ in plan.slicer_too_old} == {"scipy", "numpy"}
    assert "scipy" not in names(plan.pip) and "numpy" not in names(plan.pip)
    assert "scipy 1.10.1" in plan.blocked and "5.10 or later" in plan.blocked and "\n" not in plan.blocked
    calls = []
    with pytest.raises(RuntimeError, match="not replaced"):
        dependencies.install(plan, pip_install=calls.append)
    assert calls == []


def test_on_slicer_5_8_nothing_is_installed_and_the_plan_says_why_in_one_line():
    """Slicer 5.8 (Python 3.9.10): pip would fail halfway (transformers 5 needs Python 3.11); nothing starts."""
    slicer_5_8 = {**SLICER_5_10, "numpy": "1.26.4", "scipy": "1.13.1", "pydicom": "2.4.4"}
    plan = dependencies.plan_installation(version_of=versions(slicer_5_8), slicer_version=(5, 8),
                                          python_version=(3, 9, 10))
    assert not plan.nothing_to_do
    assert "5.10 or later" in plan.blocked and "Slicer 5.8" in plan.blocked and "\n" not in plan.blocked
    assert plan.describe() == plan.blocked
    calls = []

    class PyTorchUtilsStandIn:
        def installTorch(self, **options):  # noqa: N802  (PyTorchUtils' name)
            calls.append(options)

    with pytest.raises(RuntimeError, match="5.10 or later"):
        dependencies.install(plan, pip_install=calls.append, torch_logic=PyTorchUtilsStandIn())
    assert calls == []
    supported = dependencies.plan_installation(version_of=versions(SLICER_5_10), slicer_version=(5, 10),
                                               python_version=(3, 12, 10))
    assert not supported.blocked and supported.pip


def test_pip_runs_with_slicers_packages_held_at_their_versions_and_torch_goes_through_pytorch_utils():
    class PyTorchUtilsStandIn:
        calls = []

        def installTorch(self, **options):  # noqa: N802  (PyTorchUtils' name)
            self.calls.append(options)
            return object()

    seen = {}

    def pip_install(arguments):
        assert arguments[0] == "--constraint"
        seen["constraints"] = Path(arguments[1]).read_text().split()  # the file exists during the call
        seen["requirements"] = arguments[2:]

    plan = dependencies.plan_installation(version_of=versions(SLICER_5_10))
    torch_logic = PyTorchUtilsStandIn()
    dependencies.install(plan, pip_install=pip_install, torch_logic=torch_logic)
    assert torch_logic.calls == [{"askConfirmation": False, "torchVersionRequirement": ">=2.4",
                                  "torchvisionVersionRequirement": ">=0.19"}]
    assert "scipy==1.13.1" in seen["constraints"] and "pydicom==2.4.4" in seen["constraints"]
    assert {dependencies.canonicalize_name(r.split("<")[0].split(">")[0].split("=")[0])
            for r in seen["requirements"]} == OURS
    with pytest.raises(RuntimeError, match="PyTorch' extension"):
        dependencies.install(plan, pip_install=pip_install, torch_logic=None)


def test_installed_names_are_found_however_they_are_spelled():
    """Requirement names (huggingface_hub, SimpleITK) find the installed distributions in this Python."""
    for name in ("huggingface_hub", "SimpleITK", "typing-extensions", "numpy"):
        assert dependencies.installed_version(name) is not None, name


def test_dicom_seg_export_says_why_it_cannot_run_on_slicer_5_10_and_runs_where_slicer_ships_highdicom():
    from MedicalSAM3SlicerLib.exports import dicom_seg_unavailable

    on_5_10 = dicom_seg_unavailable(versions(SLICER_5_10))
    assert "pydicom 3" in on_5_10 and "2.4.4" in on_5_10 and ".seg.nrrd" in on_5_10 and "\n" not in on_5_10
    newer_slicer = {**SLICER_5_10, "pydicom": "3.0.2", "highdicom": "0.27.0", "numpy": "2.4.6"}
    assert dicom_seg_unavailable(versions(newer_slicer)) == ""
    assert "highdicom" in dicom_seg_unavailable(versions({**newer_slicer, "highdicom": None}))


SLICER_5_10_PYTHON = "3.12.10"  # Slicer_REQUIRED_PYTHON_VERSION in Slicer's CMakeLists.txt at v5.10.0
PLATFORMS = ({"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"},
             {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64"},
             {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix", "platform_machine": "arm64"})


def test_what_the_install_adds_accepts_slicers_own_packages_on_every_platform():
    """The constraints file holds Slicer's packages at their versions; pip then succeeds only if every package it
    adds accepts them. Checked on the dependency metadata of the versions the project is tested with (the ranges
    in python-requirements.txt allow only their patch releases, torch aside)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.version import Version

    checked = set()
    for requirement in dependencies.read_requirements():
        if dependencies.is_slicer_package(requirement.name):
            continue
        distribution = metadata.distribution(requirement.name)
        assert dependencies.is_met(requirement, distribution.version), (requirement, distribution.version)
        requires_python = distribution.metadata.get("Requires-Python") or ""
        assert Requirement(f"python{requires_python}").specifier.contains(SLICER_5_10_PYTHON), requirement
        for platform in PLATFORMS:
            environment = {**platform, "python_version": "3.12", "python_full_version": SLICER_5_10_PYTHON,
                           "implementation_name": "cpython", "platform_python_implementation": "CPython",
                           "extra": ""}
            for dependency in map(Requirement, distribution.requires or []):
                if dependency.marker is not None and not dependency.marker.evaluate(environment):
                    continue
                name = dependencies.canonicalize_name(dependency.name)
                if name in SLICER_5_10:
                    checked.add(name)
                    assert dependency.specifier.contains(Version(SLICER_5_10[name]), prereleases=True), (
                        f"{requirement.name} {distribution.version} needs {dependency} on "
                        f"{platform['platform_system']}; Slicer 5.10 ships {name} {SLICER_5_10[name]}")
    assert {"numpy", "packaging", "typing-extensions", "pillow"} <= checked  # the check saw real dependencies


def test_the_minimum_python_is_the_one_the_pinned_packages_need():
    """supported_versions.MINIMUM_PYTHON_VERSION (and pyproject's requires-python) is exactly what the pinned
    packages need: all accept it, and some reject the Python before it (Slicer 5.8's 3.9.10 among them)."""
    import re
    from importlib import metadata

    from packaging.specifiers import SpecifierSet

    from MedicalSAM3SlicerLib.supported_versions import MINIMUM_PYTHON_VERSION

    root = Path(__file__).resolve().parents[2]
    minimum = "{}.{}.0".format(*MINIMUM_PYTHON_VERSION)
    before = "{}.{}.99".format(MINIMUM_PYTHON_VERSION[0], MINIMUM_PYTHON_VERSION[1] - 1)
    rejecting_before, rejecting_5_8 = set(), set()
    for name in ("engine", "torch", "server", "dicom"):
        for line in (root / "requirements" / f"{name}.txt").read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            package = line.split("==", 1)[0]
            specifier = SpecifierSet(metadata.distribution(package).metadata.get("Requires-Python") or "")
            assert specifier.contains(minimum), (package, str(specifier))
            if not specifier.contains(before):
                rejecting_before.add(package)
            if not specifier.contains("3.9.10"):
                rejecting_5_8.add(package)
    assert "transformers" in rejecting_before and {"transformers", "scipy", "pydicom"} <= rejecting_5_8
    pyproject = (root / "pyproject.toml").read_text()
    assert re.search(r'^requires-python = ">=(\d+\.\d+)"$', pyproject, re.M).group(1) == "{}.{}".format(
        *MINIMUM_PYTHON_VERSION)


# --- remote mode, the packages listed before the user agrees, a loaded torch (issue 17, items 5 and 6) ---------

def test_remote_server_mode_asks_only_for_httpx_and_never_for_torch():
    plan = dependencies.plan_installation(version_of=versions(SLICER_5_10), remote=True)
    assert plan.torch == [] and names(plan.pip) == {"httpx"}
    assert "httpx" in plan.describe() and "torch" not in plan.describe().lower()
    with_httpx = dependencies.plan_installation(version_of=versions({**SLICER_5_10, "httpx": "0.28.1"}), remote=True)
    assert with_httpx.nothing_to_do  # the server's GPU does the rest: no torch, no transformers


def test_a_missing_transformers_is_offered_for_installation_like_torch():
    present = {**SLICER_5_10, "torch": "2.14.1+cu130", "torchvision": "0.29.1", "huggingface_hub": "2.4.0",
               "tokenizers": "0.23.3", "safetensors": "0.8.0", "tqdm": "4.99.0", "psutil": "7.2.2", "httpx": "0.28.1"}
    plan = dependencies.plan_installation(version_of=versions(present))
    assert names(plan.pip) == {"transformers"} and not plan.nothing_to_do and not plan.blocked
    assert "transformers" in plan.describe() and "Install now?" in plan.describe()
    assert "setup_env" not in plan.describe()
    assert "torch==2.14.1+cu130" in plan.constraints()  # pip cannot replace the torch that is there


def test_a_torch_this_session_has_loaded_is_never_replaced_a_restart_is_offered():
    old_torch = {**SLICER_5_10, "torch": "2.2.0", "torchvision": "0.17.0"}
    plan = dependencies.plan_installation(version_of=versions(old_torch), loaded_modules={"torch": object()})
    assert "2.2.0" in plan.restart_needed and "Restart" in plan.restart_needed and "\n" not in plan.restart_needed
    assert not plan.nothing_to_do and plan.describe() == plan.restart_needed
    calls = []

    class PyTorchUtilsStandIn:
        def installTorch(self, **options):  # noqa: N802  (PyTorchUtils' name)
            calls.append(options)
            return object()

    with pytest.raises(RuntimeError, match="Restart"):
        dependencies.install(plan, pip_install=calls.append, torch_logic=PyTorchUtilsStandIn())
    assert calls == []
    # after the restart torch is not loaded yet: the PyTorch extension may replace it
    fresh = dependencies.plan_installation(version_of=versions(old_torch), loaded_modules={})
    assert not fresh.restart_needed and names(fresh.torch) == {"torch", "torchvision"}
    assert "torch>=2.4 (replaces 2.2.0)" in fresh.describe()  # the user sees what is replaced before agreeing
    new = dependencies.plan_installation(version_of=versions(SLICER_5_10), loaded_modules={})
    assert "torch>=2.4 (new)" in new.describe()
    dependencies.install(fresh, pip_install=calls.append, torch_logic=PyTorchUtilsStandIn())
    assert calls[0]["torchVersionRequirement"] == ">=2.4"


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A minimal pure-Python wheel (metadata only) for a local package index."""
    import zipfile

    info = f"{name.replace('-', '_')}-{version}.dist-info"
    metadata = "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                          *(f"Requires-Dist: {r}" for r in requires)]) + "\n"
    files = {f"{info}/METADATA": metadata,
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def test_before_the_user_agrees_every_package_pip_adds_or_replaces_is_listed_with_versions(tmp_path):
    """pip's own dry run with the install's arguments (a local index here): a dependency pip would pull in, and
    one it would replace, are both named with versions; nothing is installed."""
    from MedicalSAM3SlicerLib import pip_commands

    _wheel(tmp_path, "medsam3-test-tool", "2.0", ("medsam3-test-base>=1.5",))
    _wheel(tmp_path, "medsam3-test-base", "1.6")
    installed = versions({**SLICER_5_10, "medsam3-test-base": "1.0"})
    plan = dependencies.plan_installation([dependencies.Requirement("medsam3-test-tool>=2")], version_of=installed)
    with dependencies.pip_install_arguments(plan) as arguments:
        changes = pip_commands.preview_changes(["--no-index", "--find-links", str(tmp_path), *arguments], installed)
    assert [str(change) for change in changes] == ["medsam3-test-base 1.0 -> 1.6 (replaced)",
                                                   "medsam3-test-tool 2.0 (new)"]
    text = plan.describe(changes)
    assert "medsam3-test-base 1.0 -> 1.6 (replaced)" in text and "medsam3-test-tool 2.0 (new)" in text
    assert dependencies.installed_version("medsam3-test-tool") is None  # a dry run


def test_a_failing_pip_says_pips_own_error_not_only_the_exit_status(tmp_path):
    from MedicalSAM3SlicerLib import pip_commands

    lines = []
    with pytest.raises(pip_commands.PipError) as failure:
        pip_commands.run_pip(["install", "--dry-run", "--no-index", "--find-links", str(tmp_path),
                              "medsam3-test-absent==9"], on_line=lines.append)
    message = str(failure.value)
    assert "exit status 1" in message and "medsam3-test-absent" in message and "ERROR" in message
    assert "\n" not in message and any("medsam3-test-absent" in line for line in lines)  # shown while it ran


def test_the_torch_step_shows_pips_lines_as_they_come_and_its_failure_says_why():
    """The PyTorch extension's pip output is printed line by line (slicer.util.logProcessOutput); with stdout
    forwarded, each line reaches the status bar, and a CalledProcessError is explained by pip's own error."""
    import contextlib
    import io
    import subprocess

    from MedicalSAM3SlicerLib import pip_commands

    shown, console = [], io.StringIO()
    forwarder = pip_commands.LineForwarder(console, shown.append)
    with contextlib.redirect_stdout(forwarder):
        print("Collecting torch==2.9.1")
        print("  Downloading torch-2.9.1-cp312-none-manylinux.whl (899.7 MB)", end="")
        print("\nERROR: Could not install packages due to an OSError: [Errno 28] No space left on device")
    assert shown[0] == "Collecting torch==2.9.1" and "899.7 MB" in shown[1] and "No space left" in shown[2]
    assert "Collecting torch==2.9.1" in console.getvalue()  # the console still shows everything
    failure = subprocess.CalledProcessError(1, ["PythonSlicer", "-m", "pip", "install", "torch"])
    assert str(failure).endswith("exit status 1.")  # what the user saw before
    message = pip_commands.explain(failure, forwarder.tail)
    assert "No space left on device" in message and "exit status 1" in message and "\n" not in message
    assert pip_commands.explain(RuntimeError("PyTorch could not be installed")) == "PyTorch could not be installed"

