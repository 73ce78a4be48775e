"""An older Slicer gets one clear line instead of an install that fails halfway; 5.10 and later pass."""

import ast
from pathlib import Path

from MedicalSAM3SlicerLib.supported_versions import unsupported_slicer_message

LIBRARY = Path(__file__).resolve().parents[1] / "MedicalSAM3Slicer" / "MedicalSAM3SlicerLib"


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
