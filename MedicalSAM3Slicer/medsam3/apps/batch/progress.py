"""What a running batch tells its user: a line per finished case (:class:`..progress.Progress`, the applications'
one reporter) and, at the end, a summary table."""

from __future__ import annotations

from ..progress import Progress, clock_text

__all__ = ["Progress", "summary_table"]


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
                 f"wall time {clock_text(wall_seconds)}")
    return "\n".join(line.rstrip() for line in lines)
