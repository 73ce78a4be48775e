"""The encoding cache stays within its memory budget and never encodes one slice twice at the same time."""

import threading

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


def test_a_slice_requested_by_two_threads_is_encoded_once(monkeypatch):
    """The first request is still encoding when the second arrives -- made certain with events, not a sleep: the
    encoding waits until the second request is either blocked waiting for it (right) or encoding too (wrong)."""
    from medsam3.interaction import embedding_cache

    cache = EmbeddingCache()
    calls = []
    second_arrived, first_encoding = threading.Event(), threading.Event()

    class SignallingEvent(threading.Event):
        """The cache's in-flight event: says when the second request starts waiting on it."""

        def wait(self, timeout=None):
            if threading.current_thread().name == "second-request":
                second_arrived.set()
            return super().wait(timeout)

    def encoding():
        calls.append(threading.current_thread().name)
        first_encoding.set()
        if len(calls) == 1:
            assert second_arrived.wait(60), "the second request never came"
        else:
            second_arrived.set()  # a second encoding of the same slice: the defect this test is for
        return np.ones(10)

    monkeypatch.setattr(embedding_cache.threading, "Event", SignallingEvent)
    results = []
    first = threading.Thread(target=lambda: results.append(cache.get_or_compute("slice", encoding)),
                             name="first-request")
    first.start()
    assert first_encoding.wait(60)
    second = threading.Thread(target=lambda: results.append(cache.get_or_compute("slice", encoding)),
                              name="second-request")
    second.start()
    first.join()
    second.join()

    assert calls == ["first-request"] and len(results) == 2 and results[0] is results[1]
