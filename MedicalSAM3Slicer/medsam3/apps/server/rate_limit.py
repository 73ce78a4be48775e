"""Requests per minute per client, as a token bucket: short bursts pass, a sustained flood gets 429.

The buckets are kept in least-recently-used order and at most ``max_clients`` of them: each request costs the
same whatever the number of distinct clients seen (a flood from many addresses evicts the buckets seen the
longest ago; a client forgotten that way starts again with a full bucket)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

MAX_TRACKED_CLIENTS = 10_000


class RateLimiter:
    """A bucket of ``per_minute`` tokens per client, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_TRACKED_CLIENTS):
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, time)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, client: str) -> float:
        """0 when the request may proceed, else the seconds until it would."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill_per_second)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)  # now the most recent
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return 0.0 if allowed else (1.0 - tokens) / self.refill_per_second
