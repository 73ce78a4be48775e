"""An older Slicer gets one clear line instead of an install that fails halfway; 5.10 and later pass."""

import ast
from pathlib import Path

from MedicalSAM3SlicerLib.supported_versions import unsupported_slicer_message

LIBRARY = Path(__file__).resolve().parents[2] / "MedicalSAM3Slicer" / "MedicalSAM3SlicerLib"


def test_slicer_5_8_is_told_in_one_line_what_to_do():
    message = unsupported_slicer_message(slicer_version=(5, 8), python_version=(3, 9, 10))
    assert message is not None and "\n" not in message
    assert "5.10 or later" in message and "Slicer 5.8" in message and "download.slicer.org" in message


def test_slicer_5_10_and_later_are_supported():
    assert unsupported_slicer_message(slicer_version=(5, 10), python_version=(3, 12, 10)) is None
    assert unsupported_slicer_message(slicer_version=(6, 0), python_version=(3, 13, 1)) is None


def test_outside_slicer_only_python_is_checked():
    assert unsupported_slicer_message(slicer_version=None, python_version=(3, 9, 10)) is not None
    assert unsupported_slicer_message(slicer_version=None, python_version=(3, 12, 0)) is None


def test_the_check_itself_loads_in_slicer_5_8s_python():
    """The module reports the problem instead of failing at import: the check parses as Python 3.9 code."""
    for name in ("supported_versions.py", "__init__.py"):
        ast.parse((LIBRARY / name).read_text(encoding="utf-8"), feature_version=(3, 9))


MODULE_FOLDER = LIBRARY.parent


def _modules_loaded_with_the_widget() -> list[Path]:
    """MedicalSAM3Slicer.py and every module of this repository it imports when Slicer loads it (top-level imports,
    followed transitively)."""

    def imported(path: Path) -> list[Path]:
        found = []
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = path.parent
                    for _ in range(node.level - 1):
                        base = base.parent
                    parts = list(base.relative_to(MODULE_FOLDER).parts) + (node.module or "").split(".")
                else:
                    parts = (node.module or "").split(".")
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                parts, names = None, []
                for alias in node.names:
                    found += imported_module(alias.name.split("."), [])
                continue
            else:
                continue
            found += imported_module([part for part in parts if part], names)
        return found

    def imported_module(parts: list[str], names: list[str]) -> list[Path]:
        target = MODULE_FOLDER.joinpath(*parts)
        found = [target.with_suffix(".py")] if target.with_suffix(".py").is_file() else []
        if (target / "__init__.py").is_file():
            found.append(target / "__init__.py")
            found += [target / f"{name}.py" for name in names if (target / f"{name}.py").is_file()]
        return found

    seen, todo = set(), [MODULE_FOLDER / "MedicalSAM3Slicer.py"]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += imported(path)
    return sorted(seen)


def test_the_module_loads_in_slicer_5_8s_python_to_say_it_is_unsupported():
    """For the one line to show, the widget and what it imports at load time must not fail in Python 3.9 first:
    no 3.10+ syntax, and no 3.10+ keywords (zip(strict=), dataclass(slots=/kw_only=)) in them."""
    modules = _modules_loaded_with_the_widget()
    assert LIBRARY / "dependencies.py" in modules and LIBRARY / "supported_versions.py" in modules
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                keywords = {keyword.arg for keyword in node.keywords}
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                assert not (name == "zip" and "strict" in keywords), f"{path.name}:{node.lineno}: zip(strict=)"
                assert not (name == "dataclass" and keywords & {"slots", "kw_only"}), f"{path.name}:{node.lineno}"
