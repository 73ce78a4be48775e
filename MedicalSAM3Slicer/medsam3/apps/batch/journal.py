"""The batch's JSON-lines log: one line per case and run (done, failed or skipped), and what a rerun may skip.

A case is skipped when the log's latest ``done`` line for it has the same key (a hash of the input's bytes and
every setting that changes the result, the model among them) and its output files still hash to what that line
recorded. The log is a :class:`..json_lines.JsonLines` file, as the evaluation's journal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from ... import __version__ as ENGINE_VERSION
from ..json_lines import JsonLines
from ..segment_pipeline import SegmentRequest
from .case_commit import outputs_match

JOURNAL_NAME = "batch-log.jsonl"
OUTPUT_LAYOUT = 1  # bump when the files written per case change, so that older results are redone


def case_key(input_sha256: str, request: SegmentRequest, model: str | None) -> str:
    """A hash of everything a case's result depends on: input bytes, prompts, model, engine version."""
    settings = [input_sha256, asdict(request), model or "default", ENGINE_VERSION, OUTPUT_LAYOUT]  # a fixed order
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()


class Journal(JsonLines):
    def __init__(self, folder: Path):
        super().__init__(Path(folder) / JOURNAL_NAME)  # the message names "its log", the default

    def finished_with(self) -> dict[str, dict]:
        """The latest ``done`` record of each case whose files all still hold the bytes it hashed, by case id."""
        done: dict[str, dict] = {}
        for record in self.records():
            if record.get("status") == "done" and isinstance(record.get("case"), str):
                done[record["case"]] = record
        return {case: record for case, record in done.items() if outputs_match(record)}
