"""The one progress reporter of the applications: a line per finished unit (a batch case, an evaluated case x
structure): its status and time, how many are left and an estimate of the time left. Lines, not a redrawn bar, so
that a log file or a Ray driver's output reads the same as a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """``case_finished({"case", "status", "seconds", "error" or "notes"})`` after each unit; a ``skipped`` unit
    (already done, or nothing to do) does not count in the estimate. ``quiet``: nothing is written."""

    def __init__(self, total: int, workers: int = 1, stream: TextIO | None = None, quiet: bool = False):
        self.total, self.workers, self.quiet = total, max(1, workers), quiet
        self.stream = stream or sys.stderr
        self.finished = 0
        self.case_seconds: list[float] = []
        self.started = time.perf_counter()

    def eta_seconds(self) -> float | None:
        """Time left: the mean time of the cases run so far, times the cases left, over the workers."""
        if not self.case_seconds:
            return None
        left = self.total - self.finished
        return sum(self.case_seconds) / len(self.case_seconds) * left / self.workers

    def case_finished(self, record: dict) -> None:
        self.finished += 1
        if record["status"] != "skipped":
            self.case_seconds.append(float(record.get("seconds", 0.0)))
        eta = self.eta_seconds()
        if self.quiet:
            return
        detail = record.get("error") or "; ".join(record.get("notes") or ())
        to_go = f", about {clock_text(eta)} to go" if eta is not None and self.finished < self.total else ""
        self.stream.write(f"[{self.finished}/{self.total}] {record['case']}: {record['status']}"
                          + (f" in {record['seconds']:.1f} s" if record["status"] != "skipped" else "")
                          + f"; {self.total - self.finished} left"
                          + to_go + (f" ({detail})" if detail else "") + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if self.quiet:
            return
        self.stream.write(text + "\n")
        self.stream.flush()
