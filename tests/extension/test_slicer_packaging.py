"""The extension installs every file it needs and no other, and the widget code only uses widgets the .ui file defines."""

from __future__ import annotations

import ast
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


def _module_file(name: str) -> Path | None:
    """The file of a module of this folder (the module, the bridge, the widgets, the engine), else None."""
    if name.split(".")[0] not in PACKAGES + ("MedicalSAM3Slicer",):
        return None
    base = MODULE_DIR.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path):
    """Every module name ``path`` imports: import statements anywhere (lazy ones in functions too) and
    ``importlib.import_module("literal")``; ``from a import b`` yields both ``a`` and ``a.b`` (b may be a module)."""
    parts = list(path.relative_to(MODULE_DIR).with_suffix("").parts)
    package = parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                if node.level else node.module
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.args[0].value


def _import_closure(roots) -> set[str]:
    """The files the roots import, directly or through others (each parent package's __init__.py runs too)."""
    seen, pending = set(), list(roots)
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path):
            pieces = name.split(".")
            pending.extend(file for i in range(1, len(pieces) + 1)
                           if (file := _module_file(".".join(pieces[:i]))) and file not in seen)
    return {str(path.relative_to(MODULE_DIR)) for path in seen}


def _installed_python_files() -> set[str]:
    """What the extension must install: the module, every file of the bridge and the widgets, and the engine files
    they import, directly or not. Nothing else: no server, batch, bench or evaluation code."""
    roots = [MODULE_DIR / "MedicalSAM3Slicer.py"] + [path for folder in ("MedicalSAM3SlicerLib",
                                                                         "MedicalSAM3SlicerWidgets")
                                                     for path in sorted((MODULE_DIR / folder).rglob("*.py"))]
    return _import_closure(roots)


def test_the_extension_installs_exactly_the_python_files_the_module_imports():
    listed = _cmake_list("MODULE_PYTHON_SCRIPTS")
    needed = {"${MODULE_NAME}.py" if name == "MedicalSAM3Slicer.py" else name for name in _installed_python_files()}
    assert not needed - listed, f"add to MODULE_PYTHON_SCRIPTS in MedicalSAM3Slicer/CMakeLists.txt: " \
                                f"{sorted(needed - listed)}"
    assert not listed - needed, f"the module never imports these: remove them from MODULE_PYTHON_SCRIPTS in " \
                                f"MedicalSAM3Slicer/CMakeLists.txt: {sorted(listed - needed)}"
    assert not any(name.startswith("medsam3/apps/") for name in listed)


def test_the_import_walk_follows_imports_made_inside_functions():
    """Modules the widget or the bridge import only when a button is pressed are installed too."""
    closure = _installed_python_files()
    lazy = {node.module for folder in ("MedicalSAM3SlicerLib", "MedicalSAM3SlicerWidgets")
            for path in (MODULE_DIR / folder).rglob("*.py") for function in ast.walk(ast.parse(path.read_text()))
            if isinstance(function, ast.FunctionDef) for node in ast.walk(function)
            if isinstance(node, ast.ImportFrom) and not node.level and node.module.startswith(PACKAGES)}
    assert lazy, "no import inside a function left in the bridge: this check has nothing to see"
    missing = {name for name in lazy if str(_module_file(name).relative_to(MODULE_DIR)) not in closure}
    assert not missing


def test_every_resource_is_installed():
    listed = _cmake_list("MODULE_PYTHON_RESOURCES")
    on_disk = _files_on_disk("*", ["Resources"]) | {p for p in _files_on_disk("*", ["medsam3"])
                                                    if not p.endswith((".py", ".pyc"))}
    assert not on_disk - listed, f"add to MODULE_PYTHON_RESOURCES: {sorted(on_disk - listed)}"
    assert {"Resources/UI/MedicalSAM3Slicer.ui", "Resources/Icons/MedicalSAM3Slicer.png",
            "medsam3/terminology/terminology.json", "Resources/python-requirements.txt"} <= listed


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
    # Reload and Test (developer mode) finds <ModuleName>Test in the module file; in an installed extension there
    # is no Testing/ folder, so both run the scenario from the installed library (issue 17)
    module_file = (MODULE_DIR / "MedicalSAM3Slicer.py").read_text()
    assert "class MedicalSAM3SlicerTest(ScriptedLoadableModuleTest):" in module_file
    module_test = module_file.split("class MedicalSAM3SlicerTest(ScriptedLoadableModuleTest):", 1)[1]
    assert "run_self_test" in module_test and "Testing" not in module_test.split('"""', 2)[2]
    assert "run_self_test" in script
    assert "MedicalSAM3SlicerLib/self_test_model.py" in _cmake_list("MODULE_PYTHON_SCRIPTS")
