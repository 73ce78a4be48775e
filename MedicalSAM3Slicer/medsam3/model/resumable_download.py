"""A large file download that reports bytes and time left, stops when asked, and resumes where it stopped.

The first *Load model* of a catalogue model is a download of about 10 GB. huggingface_hub (2.x) downloads into a
temporary file with a unique name and deletes it when the download fails or is interrupted
(``file_download._download_to_tmp_and_move``), so a stopped download would start again from zero. Here the bytes
go to ``<destination>.part`` and stay there when the user stops (or the network drops); the next call asks the
server for the rest with an HTTP ``Range`` request (RFC 9110, section 14.2) and appends it. A server that ignores the
range (answers 200) makes the download start over, never corrupt the file.

:func:`download_hub_file` resolves a Hub file's address, size and access token with huggingface_hub and downloads
it with :func:`download_resumable`; :mod:`.model_sources` keeps it in the engine's cache and looks there first.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

from ..errors import Cancelled, ModelAccessError

CHUNK_BYTES = 1 << 20
PARTIAL_SUFFIX = ".part"


def format_bytes(count: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} bytes"


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes on disk (``done``, including what an earlier, stopped download left), of ``total`` when known; the rate
    and the time left are measured over this call's bytes only."""

    done: int
    total: int | None
    session_bytes: int
    elapsed: float

    @property
    def bytes_per_second(self) -> float | None:
        return self.session_bytes / self.elapsed if self.elapsed > 0 and self.session_bytes else None

    @property
    def seconds_left(self) -> float | None:
        rate = self.bytes_per_second
        if rate is None or self.total is None:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def describe(self) -> str:
        """e.g. '3.1 GB of 10.3 GB (30%), 42.0 MB/s, about 3 min left'."""
        text = format_bytes(self.done)
        if self.total:
            text += f" of {format_bytes(self.total)} ({100 * self.done // self.total}%)"
        if self.bytes_per_second is not None:
            text += f", {format_bytes(self.bytes_per_second)}/s"
        if self.seconds_left is not None:
            text += f", about {format_duration(self.seconds_left)} left"
        return text


class DownloadStopped(Cancelled):
    """The user stopped a download; what arrived is kept and the next call resumes from there."""


def partial_path(destination: Path) -> Path:
    return destination.with_name(destination.name + PARTIAL_SUFFIX)


def download_resumable(url: str, destination: str | Path, *, expected_size: int | None = None,
                       headers: dict[str, str] | None = None,
                       progress: Callable[[DownloadProgress], None] = lambda progress: None,
                       should_stop: Callable[[], bool] = lambda: False, client: httpx.Client | None = None,
                       clock: Callable[[], float] = time.monotonic, chunk_bytes: int = CHUNK_BYTES) -> Path:
    """Download ``url`` to ``destination``, continuing a ``.part`` file an earlier call left; returns the path.

    ``should_stop`` is polled between chunks: when it returns True the bytes so far are flushed to the ``.part``
    file and :class:`DownloadStopped` is raised. The file appears at ``destination`` only when complete (and of
    ``expected_size`` bytes, when given)."""
    destination = Path(destination)
    if destination.is_file() and (expected_size is None or destination.stat().st_size == expected_size):
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(destination)
    start = partial.stat().st_size if partial.is_file() else 0
    if expected_size is not None and start > expected_size:  # not this file: start over
        partial.unlink()
        start = 0
    if expected_size is None or start < expected_size:
        owned = client is None
        client = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, read=120.0))
        try:
            _fetch(client, url, partial, start, expected_size, dict(headers or {}), progress, should_stop, clock,
                   chunk_bytes)
        finally:
            if owned:
                client.close()
    size = partial.stat().st_size
    if expected_size is not None and size != expected_size:
        partial.unlink()
        raise ModelAccessError(f"The download of {destination.name} ended at {format_bytes(size)} instead of "
                               f"{format_bytes(expected_size)}; it was discarded. Try again.")
    os.replace(partial, destination)
    return destination


def _fetch(client, url, partial, start, expected_size, headers, progress, should_stop, clock, chunk_bytes):
    if start:
        headers["Range"] = f"bytes={start}-"
    began = clock()
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code not in (200, 206):
                raise ModelAccessError(f"The download of {partial.name[:-len(PARTIAL_SUFFIX)]} failed: the server "
                                       f"answered {response.status_code} {response.reason_phrase}.")
            if start and response.status_code == 200:  # the server ignored the range: from the beginning
                start = 0
            length = response.headers.get("Content-Length")
            total = expected_size or (start + int(length) if length and length.isdigit() else None)
            received = 0
            with open(partial, "ab" if start else "wb") as file:
                for chunk in response.iter_bytes(chunk_bytes):
                    if should_stop():
                        file.flush()
                        raise DownloadStopped(f"Download stopped at {format_bytes(start + received)}"
                                              + (f" of {format_bytes(total)}" if total else "")
                                              + "; 'Load model' resumes it from there.")
                    file.write(chunk)
                    received += len(chunk)
                    progress(DownloadProgress(start + received, total, received, clock() - began))
    except httpx.HTTPError as error:
        raise ModelAccessError(f"The download was interrupted ({type(error).__name__}: {error}); what arrived is "
                               "kept, and the next try resumes from there.") from error


def download_hub_file(repository: str, filename: str, destination: str | Path,
                      progress: Callable[[DownloadProgress], None] = lambda progress: None,
                      should_stop: Callable[[], bool] = lambda: False) -> Path:
    """One file of a Hub repository into ``destination``, resumable (see the module's description); HF_TOKEN and
    HF_ENDPOINT are honoured through huggingface_hub."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    destination = Path(destination)
    if destination.is_file():
        return destination
    headers = build_hf_headers()
    endpoint = os.environ.get("HF_ENDPOINT") or None  # read now, not when huggingface_hub was imported
    metadata = get_hf_file_metadata(hf_hub_url(repository, filename, endpoint=endpoint), headers=headers,
                                    endpoint=endpoint)
    if not metadata.location or metadata.size is None:
        raise ModelAccessError(f"The Hub gave no address or size for {repository}/{filename}; try again later.")
    return download_resumable(metadata.location, destination, expected_size=metadata.size, headers=headers,
                              progress=progress, should_stop=should_stop)
