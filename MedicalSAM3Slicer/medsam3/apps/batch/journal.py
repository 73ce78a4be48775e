"""The batch's JSON-lines log: one line per case and run (done, failed or skipped), and what a rerun may skip.

A case is skipped when the log's latest ``done`` line for it has the same key (a hash of the input's bytes and
every setting that changes the result, the model among them) and its output files still hash to what that line
recorded. Lines are appended and flushed
one at a time; a line cut short by a kill is ignored when the log is read back.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from ... import __version__ as ENGINE_VERSION
from ...errors import VolumeError
from ..segment_pipeline import SegmentRequest
from .case_commit import outputs_match

JOURNAL_NAME = "batch-log.jsonl"
OUTPUT_LAYOUT = 1  # bump when the files written per case change, so that older results are redone


def case_key(input_sha256: str, request: SegmentRequest, model: str | None) -> str:
    """A hash of everything a case's result depends on: input bytes, prompts, model, engine version."""
    settings = {"input": input_sha256, "request": asdict(request), "model": model or "default",
                "engine_version": ENGINE_VERSION, "layout": OUTPUT_LAYOUT}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class Journal:
    def __init__(self, folder: Path):
        self.path = Path(folder) / JOURNAL_NAME

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        records = []
        if self.path.is_dir():
            raise VolumeError(f"{self.path} is a folder, where the batch keeps its log: move it away or give "
                              "another --output.")
        with open(self.path, encoding="utf-8", errors="replace") as stream:  # a damaged line is skipped below
            for line in stream:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if isinstance(record, dict):
                    records.append(record)
        return records

    def finished_with(self) -> dict[str, dict]:
        """The latest ``done`` record of each case whose files all still hold the bytes it hashed, by case id."""
        done: dict[str, dict] = {}
        for record in self.records():
            if record.get("status") == "done" and isinstance(record.get("case"), str):
                done[record["case"]] = record
        return {case: record for case, record in done.items() if outputs_match(record)}

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, sort_keys=False) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
