"""Encoding the slices around the one on screen in the background, so that the next click there is fast."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .engine import SegmentationEngine
from ..model.preprocessing import Preprocessing
from ..geometry.slicing import SliceAxis
from ..geometry.volume import Volume


@dataclass(frozen=True)
class PrefetchRequest:
    volume: Volume
    axis: SliceAxis | str
    centre: int
    radius: int
    preprocessing: Preprocessing | None = None
    target_text: str = ""

    def order(self) -> list[int]:
        """The centre slice, then outward: centre, +1, -1, +2, -2, ..."""
        indices = [self.centre]
        for step in range(1, self.radius + 1):
            indices += [self.centre + step, self.centre - step]
        return indices


class SlicePrefetcher:
    """One background thread; each new request replaces the pending one and stops the running one between
    slices (a click meanwhile waits for at most the slice being encoded, which it may then reuse). The work is
    done one slice at a time: :meth:`cancel` and :meth:`close` take effect at the next slice boundary."""

    def __init__(self, engine: SegmentationEngine):
        self.engine = engine
        self._condition = threading.Condition()
        self._pending: PrefetchRequest | None = None
        self._generation = 0
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="medsam3-prefetch", daemon=True)
        self._thread.start()

    def request(self, request: PrefetchRequest) -> None:
        with self._condition:
            self._pending = request
            self._generation += 1
            self._condition.notify_all()

    def cancel(self) -> None:
        with self._condition:
            self._pending = None
            self._generation += 1
            self._condition.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no request is pending or running (used by tests and shutdown)."""
        with self._condition:
            return self._condition.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self, wait: float | None = None) -> None:
        """Stop the thread after the slice it is encoding. ``wait`` None: do not wait for that (a GUI thread must
        not block on a slice encoding); else wait up to ``wait`` seconds."""
        with self._condition:
            self._closed = True
            self._pending = None
            self._generation += 1
            self._condition.notify_all()
        if wait is not None:
            self._thread.join(timeout=wait)

    @property
    def running(self) -> bool:
        """Whether the thread is still alive (it ends at the next slice boundary after close)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                request, generation = self._pending, self._generation
                self._pending, self._busy = None, True
            try:
                self.engine.precompute(request.volume, request.axis, request.order(), request.preprocessing,
                                       request.target_text, should_stop=lambda: self._generation != generation)
            except Exception:  # a failed prefetch must never disturb the user; the click will report the error
                pass
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
