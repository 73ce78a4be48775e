"""One case: read the volume, segment it with :func:`medsam3.apps.segment_pipeline.segment_volume`, write its files.

:func:`run_case` never raises for a problem with the case: it returns a record (the JSON-lines log entry) with
``status`` ``done`` or ``failed`` and the error in one line, so one bad case never stops a batch. The same
function runs in this process (local runs) and in each Ray worker.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ... import __version__ as ENGINE_VERSION
from ...transports.backend import SegmentationBackend
from ...errors import MedSam3Error
from ..segment_pipeline import SegmentRequest, StepTimer, segment_volume
from .case_commit import commit_case_folder, staging_folder
from .cases import Case, read_case_volume
from .outputs import write_case_outputs
from .segment_codes import segment_code

BackendFactory = Callable[..., SegmentationBackend]  # (model, device, server_url, api_key) -> backend


@dataclass(frozen=True)
class CaseJob:
    """One case with everything it needs: its request, its key (see :func:`.journal.case_key`), its folder."""

    case: Case
    request: SegmentRequest
    key: str
    folder: str
    input_stat: str = ""  # see Case.stat_digest
    input_sha256: str = ""


class BackendUnavailable(MedSam3Error):
    """The model could not be loaded: a problem of the whole batch (or worker), not of one case."""


class LazyBackend:
    """The backend, loaded on first use (a rerun whose cases are all done or unreadable loads no model)."""

    def __init__(self, factory: BackendFactory, model: str | None, device: str | None):
        self.factory, self.model, self.device = factory, model, device
        self._backend: SegmentationBackend | None = None

    def get(self) -> SegmentationBackend:
        if self._backend is None:
            try:
                self._backend = self.factory(self.model, self.device, None, None)
            except Exception as error:
                raise BackendUnavailable(f"the model could not be loaded: {error_line(error)}") from error
        return self._backend

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def description(self) -> dict[str, str]:
        if self._backend is None:
            return {"model": self.model or "default", "device": self.device or "auto"}
        info = self._backend.info()
        return {"model": info.model, "device": info.device}


def error_line(error: BaseException) -> str:
    if isinstance(error, MedSam3Error):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}{': ' + str(error.filename) if error.filename else ''}"
    return f"{type(error).__name__}: {error}"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def base_record(job: CaseJob, status: str) -> dict:
    return {"case": job.case.case_id, "input": job.case.describe(), "status": status, "key": job.key,
            "input_stat": job.input_stat, "input_sha256": job.input_sha256, "outputs": [], "segments": [],
            "notes": []}


def _write_and_commit(outcome, volume, job: CaseJob) -> tuple[dict[str, str], list[str]]:
    """Write the case's files into a staging folder and rename it onto the case's folder (see
    :mod:`.case_commit`); {file: SHA-256} and the writer's notes."""
    folder = Path(job.folder)
    staging = staging_folder(folder)
    try:
        written, notes = write_case_outputs(outcome, volume, job.case, staging)
        return commit_case_folder(staging, folder, written), notes
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def run_case(job: CaseJob, backend: LazyBackend) -> dict:
    """Segment one case and write its files; the log record of what happened."""
    started = time.perf_counter()
    timer = StepTimer()
    record = base_record(job, "failed")
    try:
        with timer.step("read"):
            volume = read_case_volume(job.case)
        with timer.step("load_model"):
            model = backend.get()
        outcome = segment_volume(model, volume, job.request, timer)
        with timer.step("write"):
            hashes, notes = _write_and_commit(outcome, volume, job)
        record.update(status="done", outputs=list(hashes), output_sha256=hashes, notes=notes,
                      segments=[{"name": segment_code(name, value - 1).name, "voxels": int((outcome.labels == value).sum()),
                                 "score": round(float(outcome.scores.get(name, 0.0)), 4)}
                                for value, name in enumerate(outcome.segment_names, start=1)])
    except BackendUnavailable:
        raise
    except Exception as error:  # one case's failure is logged; the batch goes on
        record["error"] = error_line(error)
        if not isinstance(error, (MedSam3Error, OSError)):
            record["traceback"] = traceback.format_exc(limit=8)
    if timer.seconds.get("load_model", 0.0) < 0.01:
        timer.seconds.pop("load_model", None)
    record.update(backend.description(), engine_version=ENGINE_VERSION, worker=worker_name(),
                  seconds=round(time.perf_counter() - started, 3),
                  timings={step: round(seconds, 3) for step, seconds in timer.seconds.items()},
                  finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return record
