"""One persistent worker thread for every model call.

Running all model calls on the same thread keeps the GPU context (and cuDNN's tuned kernels) warm between
interactions and serialises them, so a click never races an earlier click. The worker knows nothing about Qt:
the GUI calls :meth:`ModelWorker.deliver_finished` from a Qt timer on the main thread, which runs each finished
job's callback there (MRML may only be touched on the main thread).

Inside Slicer the main thread holds Python's GIL while it sits in Qt's event loop: PythonQt runs without thread
support (CTK's ``ctkAbstractPythonManager::initPythonQt`` calls ``PythonQt::init(flags)`` and never enables
PythonQt's thread support, which would release the GIL around calls into Qt), so a worker thread gets the GIL only
while the main thread runs Python code or waits in a call that releases it. Each torch operation of the worker
releases the GIL and must take it back afterwards, so with a plain polling timer every operation waits for the next
tick. :meth:`deliver_finished` therefore *waits* for a finished job for up to ``wait`` seconds
(``DELIVERY_WAIT_SECONDS`` by default) with the GIL released: the worker runs at nearly full speed during that
wait, and the GUI still processes events between two timer ticks (SlicerNNInteractive waits on
``done_event.wait(0.03)`` for the same reason).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

_STOP = object()

DELIVERY_WAIT_SECONDS = 0.025  # per timer tick (the widget's timer runs every 30 ms): the GUI keeps 5 ms of each


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

    def deliver_finished(self, wait: float = DELIVERY_WAIT_SECONDS) -> int:
        """Run the callbacks of finished jobs on the calling (main) thread; returns how many were delivered.

        When a job is queued or running and none has finished, first wait up to ``wait`` seconds for one, with
        the GIL released, so that the worker runs even when the caller otherwise holds the GIL (see above).
        """
        delivered = 0
        block = wait > 0 and self.busy
        while True:
            try:
                if block:
                    block = False
                    future, on_done, on_error = self._finished.get(timeout=wait)
                else:
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
