"""What a running batch tells its user: a line per finished case (done / left, its time, an estimate of the time
left) and, at the end, a summary table."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total: int, workers: int = 1, stream: TextIO | None = None):
        self.total, self.workers = total, max(1, workers)
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
        detail = record.get("error") or "; ".join(record.get("notes") or ())
        self.stream.write(f"[{self.finished}/{self.total}] {record['case']}: {record['status']}"
                          + (f" in {record['seconds']:.1f} s" if record["status"] != "skipped" else "")
                          + f"; {self.total - self.finished} left"
                          + (f", about {_clock(eta)} to go" if eta is not None and self.finished < self.total else "")
                          + (f" ({detail})" if detail else "") + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def summary_table(records: list[dict], wall_seconds: float) -> str:
    """One row per case (status, seconds, segments with their voxel counts, error), then the totals."""
    rows = [("case", "status", "seconds", "segments (voxels)", "error / note")]
    for record in records:
        segments = ", ".join(f"{s['name']} {s['voxels']:,}" for s in record.get("segments", []))
        seconds = "-" if record["status"] == "skipped" else f"{record.get('seconds', 0.0):.1f}"
        rows.append((record["case"], record["status"], seconds, segments,
                     record.get("error") or "; ".join(record.get("notes") or ())))
    widths = [min(max(len(row[column]) for row in rows), 40) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4]
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths) + "  " + "-" * 12)
    counts = {status: sum(r["status"] == status for r in records) for status in ("done", "skipped", "failed")}
    lines.append(f"{counts['done']} done, {counts['skipped']} skipped (already done), {counts['failed']} failed; "
                 f"wall time {_clock(wall_seconds)}")
    return "\n".join(line.rstrip() for line in lines)
