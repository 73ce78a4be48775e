"""The encoding cache stays within its memory budget and never encodes one slice twice at the same time."""

import threading
import time

import numpy as np

from medsam3.interaction.embedding_cache import EmbeddingCache


def test_least_recently_used_encodings_go_first_when_over_budget():
    cache = EmbeddingCache(max_bytes=3 * 1000)
    for key in "abc":
        cache.get_or_compute(key, lambda: np.zeros(1000, dtype=np.uint8))
    cache.get_or_compute("a", lambda: None)  # touch "a": "b" is now the oldest
    cache.get_or_compute("d", lambda: np.zeros(1000, dtype=np.uint8))
    assert "b" not in cache and all(key in cache for key in "acd")
    assert len(cache) == 3
    cache.get_or_compute("huge", lambda: np.zeros(10_000, dtype=np.uint8))  # larger than the budget: not kept
    assert "huge" not in cache and len(cache) == 3


def test_a_slice_requested_by_two_threads_is_encoded_once():
    cache = EmbeddingCache()
    calls = []

    def slow_encoding():
        calls.append(1)
        time.sleep(0.2)
        return np.ones(10)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("slice", slow_encoding)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 2 and results[0] is results[1]
