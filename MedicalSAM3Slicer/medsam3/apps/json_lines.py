"""The one journal format of the applications: JSON records, one a line, appended and synced one at a time, so that
a stopped run resumes where it stopped (``medsam3 batch``'s ``batch-log.jsonl``, ``medsam3 evaluate``'s
``progress.jsonl``). A line cut short by a kill is skipped when the file is read, and the next record starts on a
line of its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import VolumeError


class JsonLines:
    def __init__(self, path: str | Path, what: str = "its log"):
        self.path = Path(path)
        self.what = what

    def records(self) -> list[dict]:
        """Every whole record, in order ([] when there is no file yet)."""
        if self.path.is_dir():
            raise VolumeError(f"{self.path} is a folder, where the run keeps {self.what}: move it away or give "
                              "another --output.")
        if not self.path.exists():
            return []
        records = []
        with open(self.path, encoding="utf-8", errors="replace") as stream:  # a damaged line is skipped below
            for line in stream:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if isinstance(record, dict):
                    records.append(record)
        return records

    def append(self, record: dict) -> None:
        """Add one record and wait until it is on disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as stream:
            cut_short = False
            if stream.seek(0, os.SEEK_END) > 0:
                stream.seek(-1, os.SEEK_END)
                cut_short = stream.read(1) != b"\n"  # a kill cut the last line: start on a new one
            stream.write((b"\n" if cut_short else b"") + json.dumps(record).encode("utf-8") + b"\n")
            stream.flush()
            os.fsync(stream.fileno())

    def rewrite(self, records: list[dict]) -> None:
        """Replace the file by ``records`` at once (a kill leaves the old file or the new one)."""
        temporary = self.path.with_name(f".{self.path.name}.partial")
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.writelines(json.dumps(record) + "\n" for record in records)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self.path)
