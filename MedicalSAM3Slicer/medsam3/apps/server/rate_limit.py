"""Requests per minute per client, as a token bucket: short bursts pass, a sustained flood gets 429."""

from __future__ import annotations

import threading
import time
from typing import Callable

_MAX_TRACKED_CLIENTS = 10_000


class RateLimiter:
    """A bucket of ``per_minute`` tokens per client, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, time)
        self._lock = threading.Lock()

    def allow(self, client: str) -> float:
        """0 when the request may proceed, else the seconds until it would."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill_per_second)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return (1.0 - tokens) / self.refill_per_second
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > _MAX_TRACKED_CLIENTS:
                self._forget_full_buckets(now)
            return 0.0

    def _forget_full_buckets(self, now: float) -> None:
        """Drop clients whose bucket has refilled (they are indistinguishable from new clients)."""
        for client, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.refill_per_second >= self.capacity:
                del self._buckets[client]
