"""A memory-bounded, thread-safe cache of slice encodings.

Encoding a slice is the expensive step (tens of seconds on a CPU); decoding a click from a cached encoding is
cheap. Keys name everything the encoding depends on: volume fingerprint, view, slice, preprocessing, model and
input size. When two threads ask for the same missing key (the background prefetcher and a click), the second
waits for the first instead of encoding twice. The least recently used entries go first when over budget.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np


def size_in_bytes(value: object) -> int:
    """Memory held by tensors / arrays inside nested containers and dataclass-like objects."""
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a torch tensor (torch imported lazily)
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(size_in_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(size_in_bytes(v) for v in value)
    if hasattr(value, "__dict__"):
        return sum(size_in_bytes(v) for v in vars(value).values())
    return 0


@dataclass(frozen=True)
class EmbeddingKey:
    volume: str
    axis: str
    slice_index: int
    preprocessing: str
    model: str
    image_size: int


class EmbeddingCache:
    def __init__(self, max_bytes: int = 4 * 1024**3):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._in_flight: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def get_or_compute(self, key: Hashable, compute: Callable[[], object]) -> object:
        while True:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return self._entries[key][0]
                pending = self._in_flight.get(key)
                if pending is None:
                    pending = self._in_flight[key] = threading.Event()
                    self.misses += 1
                    break
            pending.wait()  # another thread is encoding this slice; use its result
        try:
            value = compute()
            self._store(key, value)
            return value
        finally:
            with self._lock:
                self._in_flight.pop(key).set()

    def _store(self, key: Hashable, value: object) -> None:
        size = size_in_bytes(value)
        with self._lock:
            if size > self.max_bytes:
                return  # larger than the whole budget: use it once, keep nothing
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted_size) = self._entries.popitem(last=False)
                self._bytes -= evicted_size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
