"""Running a request's work in a thread while watching its client: when the client disconnects (gave up,
timed out, pressed Stop and closed the connection), the work is asked to stop at its next slice."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, TypeVar

from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request

log = logging.getLogger("medsam3.server")  # the logger name users configure; unchanged by the move to apps/
T = TypeVar("T")
POLL_SECONDS = 0.2


async def run_until_disconnected(request: Request, work: Callable[[threading.Event], T]) -> T:
    """``work(stop)`` in the thread pool; ``stop`` is set when the client goes away."""
    stop = threading.Event()
    task = asyncio.ensure_future(run_in_threadpool(work, stop))
    while not task.done():
        await asyncio.wait({task}, timeout=POLL_SECONDS)
        if not task.done() and not stop.is_set() and await request.is_disconnected():
            log.info("client of %s went away: stopping its work", request.url.path.split("/sessions/")[-1][:6])
            stop.set()
    return task.result()
