"""Running a batch's cases one after another in this process, with one model loaded once."""

from __future__ import annotations

from typing import Callable, Sequence

from .case_runner import CaseJob, LazyBackend, run_case


def run_local(jobs: Sequence[CaseJob], backend: LazyBackend, on_record: Callable[[dict], None]) -> None:
    """Run every job; ``on_record`` gets each case's record as soon as the case is finished."""
    for job in jobs:
        on_record(run_case(job, backend))
