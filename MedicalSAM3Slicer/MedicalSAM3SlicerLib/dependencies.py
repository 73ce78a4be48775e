"""First-use installation of the Python packages the model needs: only what is missing, only after the user agrees,
and never replacing a package 3D Slicer ships itself.

:func:`plan_installation` compares ``Resources/python-requirements.txt`` with what is installed and says what is
missing; nothing is installed at import time or by planning. The widget shows the plan and asks; only then
:func:`install` runs: torch / torchvision through the PyTorch extension's ``PyTorchUtilsLogic`` (it chooses the
CUDA or CPU build for the computer), everything else with pip.

Slicer's own packages (:data:`SLICER_PACKAGES`) are never installed, upgraded or replaced, as
SlicerTotalSegmentator's selective install skips them: replacing scipy fails on Windows once it is imported,
and Slicer's SimpleITK is a special build. Their ranges in the requirements accept what Slicer 5.10 ships, and
every pip call gets a constraints file holding each of them at its installed version, so pip cannot replace one
as a dependency of another package either: it installs a compatible release or fails with a message, leaving
Slicer's packages as they were. A Slicer package older than the module needs is reported (use a newer Slicer), not
upgraded. On a Slicer older than 5.10 nothing is installed: the plan carries the one line of
:func:`.supported_versions.unsupported_slicer_message` instead. Installation is resumable: a restart in the middle
just plans the remaining packages again. The module's own files are never modified.

Remote-server mode (a server URL in *Settings*) needs only :data:`REMOTE_PACKAGES` (httpx and its small
dependencies) beyond what Slicer ships: ``plan_installation(remote=True)`` asks for nothing else, and the remote
client (medsam3.transports.remote_client) imports no torch and no transformers.

Before the user agrees, :func:`.pip_commands.preview_changes` lists every package pip would add or replace, with
versions (pip's dry-run report, run with the same arguments as the install). An installed torch is held at its
version during pip, and a torch this session has already imported is never replaced: the plan then says a restart
is needed (:attr:`InstallPlan.restart_needed`) and installs nothing, as SlicerTotalSegmentator refuses to upgrade a
loaded torch.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .supported_versions import unsupported_slicer_message

REQUIREMENTS_PATH = Path(__file__).resolve().parents[1] / "Resources" / "python-requirements.txt"
TORCH_PACKAGES = ("torch", "torchvision")
REMOTE_PACKAGES = ("httpx",)  # remote-server mode: the HTTP client; numpy and the rest are Slicer's own

# Packages in Slicer's own Python, with the Slicer 5.10 source file that installs each (SuperBuild/External_*.cmake).
SLICER_PACKAGES = {
    "numpy": "External_python-numpy.cmake (2.0.2)",
    "scipy": "External_python-scipy.cmake (1.13.1)",
    "pydicom": "External_python-dicom-requirements.cmake (2.4.4)",
    "pillow": "External_python-dicom-requirements.cmake (11.2.1)",
    "six": "External_python-dicom-requirements.cmake",
    "retrying": "External_python-dicom-requirements.cmake",
    "dicomweb-client": "External_python-dicom-requirements.cmake",
    "highdicom": "External_python-dicom-requirements.cmake after 5.10 (0.27.0 on Slicer's main branch)",
    "dcmqi": "External_python-dicom-requirements.cmake after 5.10",
    "pyjpegls": "External_python-dicom-requirements.cmake after 5.10",
    "simpleitk": "External_SimpleITK.cmake (Slicer's build of 2.5.2)",
    "requests": "External_python-requests-requirements.cmake (2.32.3)",
    "certifi": "External_python-requests-requirements.cmake",
    "idna": "External_python-requests-requirements.cmake",
    "charset-normalizer": "External_python-requests-requirements.cmake",
    "urllib3": "External_python-requests-requirements.cmake",
    "packaging": "External_python-pythonqt-requirements.cmake (25.0)",
    "pyparsing": "External_python-pythonqt-requirements.cmake",
    "typing-extensions": "External_python-extension-manager-ssl-requirements.cmake (4.14.0)",
    "python-dateutil": "External_python-extension-manager-ssl-requirements.cmake",
    "cryptography": "External_python-extension-manager-ssl-requirements.cmake",
    "cffi": "External_python-extension-manager-ssl-requirements.cmake",
    "pycparser": "External_python-extension-manager-ssl-requirements.cmake",
    "gitpython": "External_python-extension-manager-requirements.cmake",
    "pip": "External_python-pip.cmake",
    "setuptools": "External_python-setuptools.cmake",
    "wheel": "External_python-wheel.cmake",
}


def is_slicer_package(name: str) -> bool:
    return canonicalize_name(name) in SLICER_PACKAGES


def read_requirements(path: Path = REQUIREMENTS_PATH) -> list[Requirement]:
    requirements = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement as error:
            raise ValueError(f"{path}: cannot read requirement {line!r} ({error}).") from error
    return requirements


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def is_met(requirement: Requirement, installed: str | None) -> bool:
    """Whether an installed version satisfies the requirement (a local build tag such as +cu121 is ignored)."""
    if installed is None:
        return False
    try:
        version = Version(installed)
    except InvalidVersion:
        return False
    return requirement.specifier.contains(Version(version.public), prereleases=True)


@dataclass
class InstallPlan:
    """What is missing: torch packages (for the PyTorch extension) and pip requirements; Slicer's own packages that
    are too old (never replaced: the user needs a newer Slicer); the versions pip must keep."""

    torch: list[Requirement] = field(default_factory=list)
    pip: list[Requirement] = field(default_factory=list)
    slicer_too_old: list[tuple[Requirement, str]] = field(default_factory=list)  # (requirement, installed)
    keep: dict[str, str] = field(default_factory=dict)  # Slicer's packages present: name -> installed version
    unsupported: str = ""  # one line when this Slicer is older than the module supports
    held: dict[str, str] = field(default_factory=dict)  # torch packages installed and good: held at their version
    replaced_torch: dict[str, str] = field(default_factory=dict)  # torch packages installed but too old
    restart_needed: str = ""  # one line when a torch already imported in this session would have to be replaced

    @property
    def nothing_to_do(self) -> bool:
        return (not self.torch and not self.pip and not self.slicer_too_old and not self.unsupported
                and not self.restart_needed)

    @property
    def blocked(self) -> str:
        """One line when the plan cannot be carried out (a Slicer older than 5.10, or Slicer's own packages would
        have to be replaced), else ""."""
        if self.unsupported:
            return self.unsupported
        if not self.slicer_too_old:
            return ""
        found = ", ".join(f"{r.name} {installed} (needs {r.name}{r.specifier})" for r, installed in self.slicer_too_old)
        return (f"This Slicer's own Python packages are too old for Medical SAM3: {found}. They are part of Slicer "
                "and are not replaced; use 3D Slicer 5.10 or later.")

    def constraints(self) -> list[str]:
        """pip constraints that hold every Slicer package present, and an installed torch that is good enough, at
        its installed version (a local build tag such as +cu130 is kept: pip compares it exactly)."""
        return [f"{name}=={version}" for name, version in sorted({**self.keep, **self.held}.items())]

    def describe(self, changes: list | None = None) -> str:
        """The text the confirmation dialog shows; ``changes`` (:func:`.pip_commands.preview_changes`) lists
        each package pip would add or replace."""
        if self.blocked:
            return self.blocked
        if self.restart_needed:
            return self.restart_needed
        if self.nothing_to_do:
            return "All required Python packages are installed."
        lines = ["MedicalSAM3Slicer needs these Python packages in Slicer's Python:"]
        if self.torch:
            torch = ", ".join(f"{r} (replaces {self.replaced_torch[r.name]})" if r.name in self.replaced_torch
                              else f"{r} (new)" for r in self.torch)
            lines.append("  through the PyTorch extension (it picks the release and the GPU or CPU build): " + torch)
        if self.pip:
            lines.append("  with pip: " + ", ".join(map(str, self.pip)))
        if changes is not None:
            lines.append("pip adds or replaces exactly these packages:")
            lines.extend(f"    {change}" for change in changes)
        if self.keep:
            lines.append("Slicer's own packages (" + ", ".join(sorted(self.keep)) + ") stay as they are.")
        if self.torch:
            lines.append("PyTorch is a download of about 1 to 3 GB and takes several minutes.")
        lines.append("Install now?")
        return "\n".join(lines)


def plan_installation(requirements: list[Requirement] | None = None,
                      version_of: Callable[[str], str | None] = installed_version,
                      slicer_version: tuple[int, int] | None = None,
                      python_version: tuple[int, ...] | None = None, remote: bool = False,
                      loaded_modules=None) -> InstallPlan:
    """Which requirements are not met by the installed packages, and which installed packages are Slicer's.

    ``slicer_version`` / ``python_version`` default to the running Slicer's and Python's
    (:func:`.supported_versions.unsupported_slicer_message`); on an unsupported one the plan is blocked.
    ``remote``: only what remote-server mode needs (:data:`REMOTE_PACKAGES`). ``loaded_modules`` (default
    ``sys.modules``): an installed torch that is imported there and too old makes the plan say a restart is needed.
    """
    loaded_modules = sys.modules if loaded_modules is None else loaded_modules
    plan = InstallPlan(unsupported=unsupported_slicer_message(slicer_version, python_version) or "")
    for name in SLICER_PACKAGES:
        installed = version_of(name)
        if installed is not None:
            plan.keep[name] = installed
    for requirement in requirements if requirements is not None else read_requirements():
        needed_remotely = canonicalize_name(requirement.name) in REMOTE_PACKAGES or is_slicer_package(requirement.name)
        if remote and not needed_remotely:
            continue
        installed = version_of(requirement.name)
        if is_met(requirement, installed):
            if requirement.name in TORCH_PACKAGES:
                plan.held[requirement.name] = installed
            continue
        if requirement.name in TORCH_PACKAGES:
            plan.torch.append(requirement)
            if installed is not None:
                plan.replaced_torch[requirement.name] = installed
        elif is_slicer_package(requirement.name) and installed is not None:
            plan.slicer_too_old.append((requirement, installed))
        else:
            plan.pip.append(requirement)
    loaded = [f"{r.name} {version_of(r.name)}" for r in plan.torch
              if version_of(r.name) is not None and r.name in loaded_modules]
    if loaded:
        needed = ", ".join(map(str, plan.torch))
        plan.restart_needed = (f"The module needs {needed}, but this Slicer session has already loaded "
                               f"{', '.join(loaded)}, which cannot be replaced while Slicer runs. Restart Slicer, then "
                               "click 'Install dependencies...' before 'Load model'. Restart Slicer now?")
    return plan


@contextlib.contextmanager
def pip_install_arguments(plan: InstallPlan):
    """The arguments of the plan's ``pip install`` (a constraints file holding Slicer's packages and an installed
    torch, then the requirements), valid inside the ``with`` block."""
    with tempfile.TemporaryDirectory(prefix="medsam3-install-") as directory:
        constraints = Path(directory) / "slicer-packages.txt"
        constraints.write_text("\n".join(plan.constraints()) + "\n", encoding="utf-8")
        yield ["--constraint", str(constraints), *(str(r) for r in plan.pip)]


def install(plan: InstallPlan, pip_install: Callable[[list[str]], None], torch_logic=None,
            progress: Callable[[str], None] = lambda message: None) -> None:
    """Install what the plan lists. Call only after the user agreed to ``plan.describe()``.

    ``pip_install`` takes a list of pip arguments (in Slicer: ``slicer.util.pip_install``, which accepts a list,
    Base/Python/slicer/util.py); ``torch_logic`` is a ``PyTorchUtils.PyTorchUtilsLogic`` (required when the plan
    needs torch).
    """
    if plan.blocked or plan.restart_needed:
        raise RuntimeError(plan.blocked or plan.restart_needed)
    if plan.torch:
        if torch_logic is None:
            raise RuntimeError("PyTorch is needed: install the 'PyTorch' extension from the Extensions Manager, "
                               "restart Slicer, and try again.")
        options = {f"{r.name}VersionRequirement": str(r.specifier) for r in plan.torch}
        progress("Installing PyTorch through the PyTorch extension (a download of 1 to 3 GB: this takes minutes; "
                 "the Python console shows pip's progress)...")
        torch = torch_logic.installTorch(askConfirmation=False, **options)
        if torch is None:
            raise RuntimeError("PyTorch could not be installed; see the PyTorch extension's messages in the log.")
    if plan.pip:
        progress("Installing " + ", ".join(map(str, plan.pip)) + " ...")
        with pip_install_arguments(plan) as arguments:
            pip_install(arguments)
