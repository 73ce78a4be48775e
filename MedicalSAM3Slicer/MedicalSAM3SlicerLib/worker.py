"""One persistent worker thread for every model call.

Running all model calls on the same thread keeps the GPU context (and cuDNN's tuned kernels) warm between
interactions and serialises them, so a click never races an earlier click. The worker knows nothing about Qt:
the GUI calls :meth:`ModelWorker.deliver_finished` from a Qt timer on the main thread, which runs each finished
job's callback there (MRML may only be touched on the main thread).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

_STOP = object()


class ModelWorker:
    """A queue of jobs run in order on one daemon thread; results are handed back through :meth:`deliver_finished`."""

    def __init__(self, name: str = "MedicalSAM3 model worker"):
        self._jobs: queue.Queue = queue.Queue()
        self._finished: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._pending = 0
        self._lock = threading.Lock()
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a job is queued, running, or finished but not yet delivered."""
        with self._lock:
            return self._pending > 0

    def submit(self, job: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None) -> Future:
        """Queue ``job``; ``on_done(result)`` or ``on_error(exception)`` runs in :meth:`deliver_finished`."""
        if not self._thread.is_alive():
            raise RuntimeError("The model worker was shut down.")
        future: Future = Future()
        with self._lock:
            self._pending += 1
        self._jobs.put((job, future, on_done, on_error))
        return future

    def deliver_finished(self) -> int:
        """Run the callbacks of finished jobs on the calling (main) thread; returns how many were delivered."""
        delivered = 0
        while True:
            try:
                future, on_done, on_error = self._finished.get_nowait()
            except queue.Empty:
                return delivered
            with self._lock:
                self._pending -= 1
            delivered += 1
            error = future.exception()
            if error is not None:
                if on_error is not None:
                    on_error(error)
            elif on_done is not None:
                on_done(future.result())

    def shutdown(self, wait: bool = True) -> None:
        """Finish the queued jobs, then stop the thread."""
        self._jobs.put(_STOP)
        if wait:
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                return
            job, future, on_done, on_error = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as error:  # delivered to on_error on the main thread
                    future.set_exception(error)
            self._finished.put((future, on_done, on_error))
