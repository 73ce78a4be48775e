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


def test_wiring_widget_code_uses_only_widgets_defined_in_the_ui_file():
    ui = ElementTree.parse(MODULE_DIR / "Resources" / "UI" / "MedicalSAM3Slicer.ui")
    defined = {widget.get("name") for widget in ui.iter("widget")}
    widget_files = [MODULE_DIR / "MedicalSAM3Slicer.py", MODULE_DIR / "MedicalSAM3SlicerWidgets" / "model_panel.py"]
    used = {name for path in widget_files for name in re.findall(r"self\.ui\.(\w+)", path.read_text())}
    assert used, "the widget uses no .ui widget: the pattern is broken"
    assert not used - defined, f"used by the widget but missing in the .ui: {sorted(used - defined)}"
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


def test_the_self_test_is_registered_from_testing_python_as_in_slicers_module_template():
    """Slicer's scripted-module template (Utilities/Templates/Modules/Scripted/CMakeLists.txt and its Testing/,
    Testing/Python/ CMakeLists): ``if(BUILD_TESTING)`` adds the Testing folder, whose Python/CMakeLists.txt registers
    each test script with ``slicer_add_python_unittest``. The script is not installed with the module."""
    module_cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    testing = re.search(r"if\(BUILD_TESTING\)(.*?)endif\(\)", module_cmake, re.S)
    assert testing and "add_subdirectory(Testing)" in testing.group(1)
    assert "add_subdirectory(Python)" in (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text()
    registered = re.findall(r"^\s*slicer_add_python_unittest\(SCRIPT\s+(\S+?)\)",
                            (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").read_text(), re.M)
    assert registered == ["MedicalSAM3SlicerSelfTest.py"]
    script = (MODULE_DIR / "Testing" / "Python" / registered[0]).read_text()
    assert "class MedicalSAM3SlicerSelfTest(ScriptedLoadableModuleTest):" in script and "def test_" in script
    assert not any(name.startswith("Testing/") for name in _cmake_list("MODULE_PYTHON_SCRIPTS"))
    # Reload and Test (developer mode) finds <ModuleName>Test in the module file and runs the same script
    module_file = (MODULE_DIR / "MedicalSAM3Slicer.py").read_text()
    assert "class MedicalSAM3SlicerTest(ScriptedLoadableModuleTest):" in module_file
    assert '"Testing", "Python", "MedicalSAM3SlicerSelfTest.py"' in module_file
