"""pip, run the way Slicer runs it, with what the user must see: the packages an install adds or replaces (asked
before anything changes), each line of pip's output while it works, and pip's own error lines when it fails.

``slicer.util.pip_install`` (Base/Python/slicer/util.py, v5.10.0) runs ``PythonSlicer -m pip install`` through
``launchConsoleProcess`` and ``logProcessOutput``, which prints the output to the Python console and, on failure,
raises ``CalledProcessError``, whose message is only "returned non-zero exit status 1". :func:`run_pip` runs the
same command, hands every line to a callback (the widget shows it in the status bar) and raises a
:class:`PipError` carrying pip's last ``ERROR:`` lines. :func:`preview_changes` runs pip's
``install --dry-run --report`` (pip 22.2 or later; Slicer 5.10 ships pip 25.1.1) with the same arguments as the
real install, and lists each package that would be added or replaced, with versions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from packaging.utils import canonicalize_name

TAIL_LINES = 40  # pip output kept to explain a failure
ERROR_LINES = 6  # at most this many of them shown


class PipError(RuntimeError):
    """pip failed; the message holds its own error lines."""


def slicer_python() -> str:
    """The Python pip must run in: ``PythonSlicer`` inside Slicer (as ``slicer.util._executePythonModule``),
    otherwise this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def failure_message(returncode: int, tail: Sequence[str]) -> str:
    """pip's own explanation: its ``ERROR:`` lines (and what follows them), else its last lines."""
    lines = [line.rstrip() for line in tail if line.strip()]
    first_error = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ERROR")), None)
    shown = lines[first_error:first_error + ERROR_LINES] if first_error is not None else lines[-ERROR_LINES:]
    detail = " | ".join(shown) if shown else "no output"
    return f"pip failed (exit status {returncode}): {detail}"


def run_pip(arguments: Sequence[str], python: str | None = None,
            on_line: Callable[[str], None] = lambda line: None) -> None:
    """``python -m pip ARGUMENTS``; each output line goes to ``on_line`` as it comes (which may pump the GUI's
    events, as ``slicer.util.logProcessOutput`` does). Raises :class:`PipError` with pip's error lines."""
    command = [python or slicer_python(), "-m", "pip", *arguments]
    options = {}
    if os.name == "nt":  # no console window, as slicer.util.launchConsoleProcess
        info = subprocess.STARTUPINFO()
        info.dwFlags, info.wShowWindow = 1, 0
        options["startupinfo"] = info
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"},
                          **options) as process:
        for line in process.stdout:
            tail.append(line)
            on_line(line.rstrip())
    if process.returncode != 0:
        raise PipError(failure_message(process.returncode, tail))


@dataclass(frozen=True)
class PackageChange:
    """One package an install adds (``replaces`` None) or replaces (``replaces`` the installed version)."""

    name: str
    version: str
    replaces: str | None = None

    def __str__(self) -> str:
        if self.replaces is None:
            return f"{self.name} {self.version} (new)"
        return f"{self.name} {self.replaces} -> {self.version} (replaced)"


def changes_from_report(report: dict, version_of: Callable[[str], str | None]) -> list[PackageChange]:
    """The packages a pip installation report (``pip install --dry-run --report``) would install, each with the
    version installed now, if any."""
    changes = []
    for item in report.get("install", []):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        installed = version_of(name)
        changes.append(PackageChange(canonicalize_name(name), version, installed))
    return sorted(changes, key=lambda change: change.name)


def preview_changes(install_arguments: Sequence[str], version_of: Callable[[str], str | None],
                    run: Callable[[list[str]], None] | None = None) -> list[PackageChange]:
    """What ``pip install INSTALL_ARGUMENTS`` would add or replace, changing nothing (pip's ``--dry-run``)."""
    run = run or (lambda arguments: run_pip(arguments))
    with tempfile.TemporaryDirectory(prefix="medsam3-pip-report-") as directory:
        report = Path(directory) / "report.json"
        run(["install", "--dry-run", "--quiet", "--report", str(report), *install_arguments])
        return changes_from_report(json.loads(report.read_text(encoding="utf-8")), version_of)


class LineForwarder:
    """A text stream that passes everything to ``stream`` and each finished line to ``on_line``, keeping the last
    lines: wrapped around ``sys.stdout`` while the PyTorch extension installs torch (its pip output is printed
    line by line, ``slicer.util.logProcessOutput``), it shows that progress in the status bar, and a failure's
    own lines can be shown instead of "returned non-zero exit status 1" (:func:`explain`)."""

    def __init__(self, stream, on_line: Callable[[str], None]):
        self.stream = stream
        self.on_line = on_line
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._pending = ""

    def write(self, text: str) -> int:
        if self.stream is not None:
            self.stream.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.tail.append(line)
            if line.strip():
                self.on_line(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.stream is not None:
            self.stream.flush()


def explain(error: BaseException, tail: Sequence[str] = ()) -> str:
    """One line for a failed install step: pip's own error lines for a failed pip process
    (``subprocess.CalledProcessError`` from ``slicer.util.pip_install``), else the error's message."""
    if isinstance(error, subprocess.CalledProcessError):
        return failure_message(error.returncode, tail)
    return str(error)
