"""The rules behind the server's 413 / 429 answers, one at a time (issue 23, mutation testing of server_limits): what
the memory budget refuses and how it says so, a user's share charging the server's budget, memory pinned by the
cache, what a session and a request are counted as, and the rate limiter's bucket."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from medsam3.apps.server.api_errors import ApiError
from medsam3.apps.server.body_limit import too_large_message
from medsam3.apps.server.memory_budget import (MemoryBudget, RequestKind, request_bytes, session_bytes, upload_bytes,
                                              voxels_of)
from medsam3.apps.server.rate_limit import RateLimiter

from server_harness import FakeClock

MIB = 1024**2


def refusal(call) -> ApiError:
    with pytest.raises(ApiError) as raised:
        call()
    return raised.value


def test_what_does_not_fit_now_is_429_with_retry_after_and_what_never_fits_is_413():
    budget = MemoryBudget(100 * MIB)
    held = budget.reserve(60 * MIB, "The first volume")
    busy = refusal(lambda: budget.reserve(50 * MIB, "This upload"))
    assert (busy.status, busy.kind, busy.retry_after) == (429, "MemoryBudgetFull", 10)
    assert busy.message == ("This upload needs about 50 MiB, but 60 MiB of this server's memory budget for all "
                            "sessions (100 MiB) are held by open sessions and running requests. Retry shortly, or "
                            "close sessions you no longer use.")
    never = refusal(lambda: budget.reserve(101 * MIB, "This upload"))
    assert (never.status, never.kind, never.retry_after) == (413, "OverMemoryBudget", None)
    assert never.message == ("This upload needs about 101 MiB; this server's memory budget for all sessions is "
                             "100 MiB. Crop or downsample the volume, or ask the operator to raise --memory-budget-gb.")
    assert budget.used == 60 * MIB and budget.refusals == 2  # a refusal takes nothing
    whole = refusal(lambda: budget.reserve(100 * MIB, "This upload"))  # the whole budget: fits once the rest is freed
    assert whole.status == 429
    assert budget.reserve(40 * MIB, "Exactly what is left").bytes == 40 * MIB  # the last byte fits
    held.release()
    assert budget.used == 40 * MIB


def test_a_users_share_charges_the_server_and_a_refusal_upstairs_takes_nothing_from_either():
    server = MemoryBudget(100 * MIB)
    alice = MemoryBudget(70 * MIB, parent=server, name="the memory budget of your key (alice)",
                         raised_by="memory_gb for your key in the key file")
    bob = MemoryBudget(70 * MIB, parent=server)
    first = alice.reserve(50 * MIB, "Alice's volume")
    assert (alice.used, server.used) == (50 * MIB, 50 * MIB)
    own = refusal(lambda: alice.reserve(30 * MIB, "This upload"))  # over alice's 70, not the server's 100
    assert own.status == 429 and "of the memory budget of your key (alice) (70 MiB)" in own.message
    full = refusal(lambda: bob.reserve(60 * MIB, "This upload"))  # fits bob's 70, not what the server has left
    assert full.status == 429 and full.message.startswith("This upload needs about 60 MiB, but 50 MiB of this "
                                                          "server's memory budget for all sessions (100 MiB)")
    assert (bob.used, server.used) == (0, 50 * MIB)
    never = refusal(lambda: alice.reserve(80 * MIB, "This upload"))
    assert never.status == 413 and never.message.endswith("raise memory_gb for your key in the key file.")
    first.release()
    assert (alice.used, bob.used, server.used) == (0, 0, 0)


def test_the_servers_budget_judges_a_growth_by_the_whole_reservation_and_counts_measured_sizes():
    server = MemoryBudget(100 * MIB)
    user = MemoryBudget(200 * MIB, parent=server)  # a quota larger than the server's budget
    held = user.reserve(60 * MIB, "A session")
    never = refusal(lambda: held.grow(110 * MIB))  # +50 MiB would fit one day; 110 MiB in all never will
    assert never.status == 413 and never.message.startswith("A session needs about 110 MiB; ")
    assert (user.used, server.used) == (60 * MIB, 60 * MIB)
    held.resize(150 * MIB)  # measured: recorded in both, though over the server's budget
    assert (user.used, server.used) == (150 * MIB, 150 * MIB)
    held.release()
    server.reserve(100 * MIB, "Everything")
    assert refusal(lambda: user.reserve(1, "One byte")).status == 429  # full means full, to the byte
    assert user.used == 0


def test_memory_pinned_for_the_cache_is_never_counted_on():
    server = MemoryBudget(100 * MIB)
    server.reserve(25 * MIB, "The cache", pinned=True)
    user = MemoryBudget(90 * MIB, parent=server)
    assert (server.capacity, user.capacity, server.used) == (75 * MIB, 75 * MIB, 25 * MIB)
    user.refuse_if_never_fits(75 * MIB, "This upload")  # fits once nothing else is held
    never = refusal(lambda: user.refuse_if_never_fits(75 * MIB + 1, "This upload"))
    assert never.status == 413 and "this server's memory budget for all sessions is 100 MiB" in never.message
    over_own = refusal(lambda: MemoryBudget(10 * MIB, parent=server).refuse_if_never_fits(11 * MIB, "This upload"))
    assert over_own.status == 413 and over_own.message.startswith("This upload needs about 11 MiB; ")
    assert "is 10 MiB" in over_own.message
    pinned_413 = refusal(lambda: server.reserve(80 * MIB, "This upload"))  # free now, but the cache holds 25
    assert pinned_413.status == 413
    server.reserve(5 * MIB, "A second cache", pinned=True)
    assert server.capacity == 70 * MIB  # pinned memory adds up


def test_a_reservation_grows_or_is_refused_keeping_what_it_held_and_measured_sizes_always_count():
    budget = MemoryBudget(10 * MIB)
    with budget.reserve(2 * MIB, "A body") as held:
        held.grow(6 * MIB)
        assert budget.used == 6 * MIB
        refused = refusal(lambda: held.grow(11 * MIB))
        assert refused.status == 413 and refused.message.startswith("A body needs about 11 MiB")  # the whole
        assert (held.bytes, budget.used) == (6 * MIB, 6 * MIB)
        busy = MemoryBudget(10 * MIB)
        other = busy.reserve(5 * MIB, "another")
        growing = busy.reserve(1 * MIB, "A session")
        assert refusal(lambda: growing.grow(7 * MIB)).status == 429
        growing.resize(12 * MIB)  # measured after the request: recorded even over the budget
        assert busy.used == 17 * MIB
        busy.reserve(0, "An empty body").release()  # nothing asked, nothing refused, even over the budget
        assert busy.refusals == 1
        growing.resize(-5)
        other.release()
        assert busy.used == 0
    assert budget.used == 0  # the with block gave everything back


@dataclass
class _Object:
    mask: np.ndarray
    undo: list = field(default_factory=list)


@dataclass
class _Session:
    volume: object
    _objects: dict


def test_a_session_counts_its_volume_and_every_array_it_holds_once():
    volume = type("V", (), {"array": np.zeros((4, 10, 10), np.int16)})()  # 800 bytes
    mask = np.zeros((4, 10, 10), bool)  # 400 bytes
    history = [np.zeros(100, np.uint8), {"before": np.zeros(50, np.uint8), "label": "spleen", "n": 3,
                                         "lock": object()}]  # nothing but arrays counts
    session = _Session(volume, {1: _Object(mask, history), 2: _Object(mask, [(mask, None)])})  # shared mask: once
    assert session_bytes(session) == 800 + 400 + 100 + 50
    assert session_bytes(_Session(None, {})) == 0 == session_bytes(object())  # nothing held yet
    deep = np.zeros(1000, np.uint8)
    nested: object = deep
    for _ in range(6):  # deeper than anything a session holds: not followed
        nested = [nested]
    assert session_bytes(_Session(volume, {1: nested})) == 800
    shallow: object = deep
    for _ in range(5):
        shallow = [shallow]
    assert session_bytes(_Session(volume, {1: shallow})) == 1800
    in_dicts: object = deep
    for level in range(6):
        in_dicts = {"level": in_dicts}
        assert session_bytes(_Session(volume, {1: in_dicts})) == (1800 if level < 5 else 800), level
    in_objects: object = deep
    for level in range(6):
        in_objects = _Object(in_objects)
        assert session_bytes(_Session(volume, {1: in_objects})) == (1800 if level < 5 else 800), level


def test_what_a_request_and_an_upload_are_counted_as():
    voxels = voxels_of((10, 200, 300))
    assert voxels == 600_000 and voxels_of((2000, 2000, 2000)) == 8 * 10**9  # no 32-bit overflow
    slice_allowance = 8 * MIB
    # whole-volume masks of one byte a voxel: the result, the merge with the object's mask, its undo record
    assert request_bytes(voxels, RequestKind.PROMPT) == request_bytes(voxels, RequestKind.MASK) == 4 * voxels + slice_allowance
    assert request_bytes(voxels, RequestKind.EDIT) == 2 * voxels + slice_allowance
    assert request_bytes(voxels, RequestKind.TEXT) == 4 * voxels + slice_allowance  # one phrase: three masks of instances
    assert request_bytes(voxels, RequestKind.TEXT, phrases=3) == 10 * voxels + slice_allowance
    assert request_bytes(voxels, RequestKind.TEXT, phrases=0) == request_bytes(voxels, RequestKind.TEXT)
    assert upload_bytes(1000, 5000) == 11_000  # the body, the voxels, one converted copy


def test_the_rate_limit_lets_a_burst_through_then_one_request_per_refill():
    clock = FakeClock()
    limiter = RateLimiter(120, clock)  # two a second, bursts of 120
    assert all(limiter.allow("a") == 0 for _ in range(120))
    assert limiter.allow("a") == pytest.approx(0.5)  # the 121st waits for half a token's second
    assert limiter.allow("b") == 0  # another client has its own bucket
    clock.advance(0.125)
    assert limiter.allow("a") == pytest.approx(0.375)  # a refused request costs nothing
    clock.advance(0.375)
    assert limiter.allow("a") == 0 and limiter.allow("a") == pytest.approx(0.5)
    clock.advance(3600)  # a long quiet spell refills the bucket to 120, not more
    assert sum(limiter.allow("a") == 0 for _ in range(130)) == 120


def test_the_rate_limiter_forgets_the_client_seen_the_longest_ago():
    clock = FakeClock()
    limiter = RateLimiter(1, clock, max_clients=2)
    assert limiter.allow("a") == 0 and limiter.allow("b") == 0
    assert limiter.allow("a") > 0  # a is now the most recent
    assert limiter.allow("c") == 0  # b, seen the longest ago, is forgotten
    assert len(limiter) == 2
    assert limiter.allow("a") > 0  # a kept its (empty) bucket
    assert limiter.allow("b") == 0  # b starts again with a full one


@pytest.mark.parametrize("upload, says", [(True, "upload limit of 1000 MiB: crop the volume"),
                                          (False, "limit of 1000 MiB for a JSON request: send a smaller mask")])
def test_a_body_over_the_limit_says_which_limit_and_what_to_do(upload, says):
    message = too_large_message(1000 * MIB, upload)
    assert says in message and ("--max-upload-mb" if upload else "--max-json-mb") in message
