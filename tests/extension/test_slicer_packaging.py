"""The extension installs every file it needs, and the widget code only uses widgets the .ui file defines."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "MedicalSAM3Slicer"
PACKAGES = ("MedicalSAM3SlicerLib", "MedicalSAM3SlicerWidgets", "medsam3")


def _cmake_list(variable: str) -> set[str]:
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    block = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert block, f"{variable} is not set in MedicalSAM3Slicer/CMakeLists.txt"
    return {line.strip() for line in block.group(1).splitlines() if line.strip() and not line.strip().startswith("#")}


def _files_on_disk(pattern: str, folders) -> set[str]:
    return {str(path.relative_to(MODULE_DIR)) for folder in folders for path in (MODULE_DIR / folder).rglob(pattern)
            if "__pycache__" not in path.parts and path.is_file()}


def test_every_python_file_of_the_module_and_its_packages_is_installed():
    listed = _cmake_list("MODULE_PYTHON_SCRIPTS")
    missing = _files_on_disk("*.py", PACKAGES) - listed
    assert not missing, f"add to MODULE_PYTHON_SCRIPTS in MedicalSAM3Slicer/CMakeLists.txt: {sorted(missing)}"
    assert "${MODULE_NAME}.py" in listed
    stale = {name for name in listed - {"${MODULE_NAME}.py"} if not (MODULE_DIR / name).is_file()}
    assert not stale, f"listed but not on disk: {sorted(stale)}"


def test_every_resource_is_installed():
    listed = _cmake_list("MODULE_PYTHON_RESOURCES")
    on_disk = _files_on_disk("*", ["Resources"]) | {p for p in _files_on_disk("*", ["medsam3"])
                                                    if not p.endswith((".py", ".pyc"))}
    assert not on_disk - listed, f"add to MODULE_PYTHON_RESOURCES: {sorted(on_disk - listed)}"
    assert {"Resources/UI/MedicalSAM3Slicer.ui", "Resources/Icons/MedicalSAM3Slicer.png",
            "Resources/Terminology/TypedNames.json", "Resources/python-requirements.txt"} <= listed


def test_widget_code_uses_only_widgets_defined_in_the_ui_file():
    ui = ElementTree.parse(MODULE_DIR / "Resources" / "UI" / "MedicalSAM3Slicer.ui")
    defined = {widget.get("name") for widget in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE_DIR / "MedicalSAM3Slicer.py").read_text()))
    assert used, "the widget uses no .ui widget: the pattern is broken"
    assert not used - defined, f"used in MedicalSAM3Slicer.py but missing in the .ui: {sorted(used - defined)}"
    # every interactive control of the .ui is wired up (a button nobody connects is a dead button)
    controls = {widget.get("name") for widget in ui.iter("widget")
                if widget.get("class") in ("QPushButton", "QLineEdit", "QCheckBox", "QRadioButton", "QComboBox",
                                           "qMRMLNodeComboBox")}
    assert not controls - used, f"controls never used by the widget code: {sorted(controls - used)}"


def test_extension_metadata_depends_on_pytorch():
    top = (MODULE_DIR.parent / "CMakeLists.txt").read_text()
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in top and "add_subdirectory(MedicalSAM3Slicer)" in top
    description = json.loads((MODULE_DIR.parent / "MedicalSAM3Slicer.json").read_text())
    assert description["build_dependencies"] == ["PyTorch"]
