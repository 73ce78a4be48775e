"""First-use installation of the Python packages the model needs, only after the user agrees.

:func:`plan_installation` compares ``Resources/python-requirements.txt`` with what is installed and says what is
missing; nothing is installed at import time or by planning. The widget shows the plan and asks; only then
:func:`install` runs: torch / torchvision through the PyTorch extension's ``PyTorchUtilsLogic`` (it chooses the
CUDA or CPU build for the computer), everything else with pip at the pinned versions. Installation is resumable:
a restart in the middle just plans the remaining packages again. The module's own files are never modified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

REQUIREMENTS_PATH = Path(__file__).resolve().parents[1] / "Resources" / "python-requirements.txt"
TORCH_PACKAGES = ("torch", "torchvision")

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|>=)\s*([A-Za-z0-9_.+\-]+)\s*$")


@dataclass(frozen=True)
class Requirement:
    name: str
    operator: str  # "==" or ">="
    version: str

    def __str__(self) -> str:
        return f"{self.name}{self.operator}{self.version}"

    def is_met_by(self, installed: str | None) -> bool:
        if installed is None:
            return False
        if self.operator == "==":
            return installed.split("+")[0] == self.version
        return _version_tuple(installed) >= _version_tuple(self.version)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def read_requirements(path: Path = REQUIREMENTS_PATH) -> list[Requirement]:
    requirements = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = _REQUIREMENT.match(line)
        if match is None:
            raise ValueError(f"{path}: cannot read requirement {line!r} (use name==version or name>=version).")
        requirements.append(Requirement(*match.groups()))
    return requirements


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class InstallPlan:
    """What is missing: torch packages (for the PyTorch extension) and pip requirements."""

    torch: list[Requirement] = field(default_factory=list)
    pip: list[Requirement] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not self.torch and not self.pip

    def describe(self) -> str:
        """The text the confirmation dialog shows."""
        if self.nothing_to_do:
            return "All required Python packages are installed."
        lines = ["MedicalSAM3Slicer needs these Python packages in Slicer's Python:"]
        if self.torch:
            lines.append("  through the PyTorch extension (GPU build when available): "
                         + ", ".join(map(str, self.torch)))
        if self.pip:
            lines.append("  with pip: " + ", ".join(map(str, self.pip)))
        lines.append("The download can take several minutes (PyTorch is large). Install now?")
        return "\n".join(lines)


def plan_installation(requirements: list[Requirement] | None = None,
                      version_of: Callable[[str], str | None] = installed_version) -> InstallPlan:
    """Which requirements are not met by the installed packages."""
    plan = InstallPlan()
    for requirement in requirements if requirements is not None else read_requirements():
        if not requirement.is_met_by(version_of(requirement.name)):
            (plan.torch if requirement.name in TORCH_PACKAGES else plan.pip).append(requirement)
    return plan


def install(plan: InstallPlan, pip_install: Callable[[list[str]], None], torch_logic=None,
            progress: Callable[[str], None] = lambda message: None) -> None:
    """Install what the plan lists. Call only after the user agreed to ``plan.describe()``.

    ``pip_install`` installs a list of requirement strings (in Slicer: ``slicer.util.pip_install``);
    ``torch_logic`` is a ``PyTorchUtils.PyTorchUtilsLogic`` (required when the plan needs torch).
    """
    if plan.torch:
        if torch_logic is None:
            raise RuntimeError("PyTorch is needed: install the 'PyTorch' extension from the Extensions Manager, "
                               "restart Slicer, and try again.")
        options = {f"{r.name}VersionRequirement": str(r)[len(r.name):] for r in plan.torch}
        progress("Installing PyTorch through the PyTorch extension...")
        torch = torch_logic.installTorch(askConfirmation=False, **options)
        if torch is None:
            raise RuntimeError("PyTorch could not be installed; see the PyTorch extension's messages in the log.")
    if plan.pip:
        progress("Installing " + ", ".join(map(str, plan.pip)) + " ...")
        pip_install([str(r) for r in plan.pip])
