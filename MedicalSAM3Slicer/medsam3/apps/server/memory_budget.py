"""One memory budget for everything the server holds for its clients: uploaded volumes, object masks and undo
history, cached slice encodings, and the memory a request needs while it runs.

Every allocation the server makes for a client is reserved here first. What could never fit is refused with
413; what does not fit now (other sessions and requests hold the memory) is refused with 429 and a Retry-After
(a 4xx like the server's other "busy, retry shortly" answer; not 507, which clients count as a server failure),
so a client waits instead of pushing the machine into swap. What a session holds is measured again after each
request, so masks and undo history count as they grow.
"""

from __future__ import annotations

import threading
from dataclasses import fields, is_dataclass
from enum import Enum

import numpy as np

from .api_errors import ApiError

_MIB = 1024**2
RETRY_WHILE_BUSY_SECONDS = 10  # memory held by running requests comes back within seconds
CACHE_SHARE = 0.25  # the embedding cache's part of the budget, at most


class Reservation:
    """Bytes taken from a :class:`MemoryBudget`; :meth:`resize` and :meth:`release` give them back."""

    def __init__(self, budget: "MemoryBudget", nbytes: int, what: str):
        self.budget = budget
        self.bytes = int(nbytes)
        self.what = what

    def resize(self, nbytes: int) -> None:
        """Hold ``nbytes`` from now on (a measured size: it is recorded even when it exceeds the budget)."""
        nbytes = max(0, int(nbytes))
        self.budget._take(nbytes - self.bytes, True, self.what, nbytes)
        self.bytes = nbytes

    def grow(self, nbytes: int) -> None:
        """Hold ``nbytes`` from now on, or refuse (413 / 429) and keep holding what was held."""
        nbytes = int(nbytes)
        self.budget._take(nbytes - self.bytes, False, self.what, nbytes)
        self.bytes = nbytes

    def release(self) -> None:
        self.resize(0)

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *_exception) -> None:
        self.release()


class MemoryBudget:
    """Bytes held against a total. A user's budget (``parent``: the server's) charges both: a reservation must fit
    in the user's quota and in the server's budget."""

    def __init__(self, total_bytes: int, parent: "MemoryBudget | None" = None,
                 name: str = "this server's memory budget for all sessions", raised_by: str = "--memory-budget-gb"):
        self.total = int(total_bytes)
        self.raised_by = raised_by  # what the operator changes to raise it
        self.parent = parent
        self.name = name
        self.pinned = 0  # held for the server's lifetime (the cache's share): never available to a request
        self._used = 0
        self._lock = threading.Lock()
        self.refusals = 0

    @property
    def used(self) -> int:
        with self._lock:
            return self._used

    @property
    def capacity(self) -> int:
        """The most one reservation could ever get (what is not pinned, here and in the parent)."""
        own = self.total - self.pinned
        return own if self.parent is None else min(own, self.parent.capacity)

    def _take(self, nbytes: int, force: bool, what: str, target: int | None = None) -> None:
        """Add ``nbytes`` (towards a reservation of ``target`` bytes in all), or refuse: 413 when ``target`` could
        never fit, else 429."""
        target = nbytes if target is None else target
        with self._lock:
            if not force and nbytes > 0 and self._used + nbytes > self.total:
                self.refusals += 1
                raise self._refusal(nbytes, target, what)
            self._used += nbytes
        if self.parent is not None:
            try:
                self.parent._take(nbytes, force, what, target)
            except BaseException:
                with self._lock:
                    self._used -= nbytes
                raise

    def _refusal(self, nbytes: int, target: int, what: str) -> ApiError:
        if max(nbytes, target) > self.total - self.pinned:
            return ApiError(413, "OverMemoryBudget", f"{what} needs about {max(nbytes, target) / _MIB:,.0f} MiB; "
                            f"{self.name} is {self.total / _MIB:,.0f} MiB. Crop or downsample the volume, or ask "
                            f"the operator to raise {self.raised_by}.")
        return ApiError(429, "MemoryBudgetFull", f"{what} needs about {nbytes / _MIB:,.0f} MiB, but "
                        f"{self._used / _MIB:,.0f} MiB of {self.name} ({self.total / _MIB:,.0f} MiB) are held by open "
                        "sessions and running requests. Retry shortly, or close sessions you no longer use.",
                        retry_after=RETRY_WHILE_BUSY_SECONDS)

    def refuse_if_never_fits(self, nbytes: int, what: str) -> None:
        """413 when ``nbytes`` could never be held here (or in the parent), however much is given back."""
        budget: MemoryBudget | None = self
        while budget is not None:
            if nbytes > budget.total - budget.pinned:
                raise budget._refusal(nbytes, nbytes, what)
            budget = budget.parent

    def reserve(self, nbytes: int, what: str, pinned: bool = False) -> Reservation:
        """Take ``nbytes`` now, or refuse with 413 (never fits) / 429 (does not fit now). ``pinned``: held for the
        server's lifetime, so no request can count on it."""
        self._take(int(nbytes), False, what)
        if pinned:
            self.pinned += int(nbytes)
        return Reservation(self, nbytes, what)


# --- what things cost -----------------------------------------------------------------------------------------
def upload_bytes(body_bytes: int, decoded_bytes: int) -> int:
    """Peak memory of decoding an upload: the body, the inflated voxels, and one converted copy."""
    return body_bytes + 2 * decoded_bytes


def session_bytes(session: object) -> int:
    """What a session holds: its volume and every object's mask, prompts and undo / redo history."""
    volume = getattr(session, "volume", None)
    held = volume.array.nbytes if volume is not None else 0
    objects = getattr(session, "_objects", None)
    if objects:
        held += _array_bytes(list(objects.values()), set(), 0)
    return held


def _array_bytes(value: object, seen: set[int], depth: int) -> int:
    """Bytes of the numpy arrays reachable through containers and dataclass fields (each array once)."""
    if depth > 6 or id(value) in seen or isinstance(value, (str, bytes, int, float, bool, type, Enum)) \
            or value is None:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_array_bytes(v, seen, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple, set)):
        return sum(_array_bytes(v, seen, depth + 1) for v in value)
    if is_dataclass(value):
        return sum(_array_bytes(getattr(value, f.name), seen, depth + 1) for f in fields(value))
    return 0


class RequestKind(Enum):
    """What a request on a session does, as its memory estimate sees it: the whole-volume masks (one byte a voxel)
    it holds while it runs: the result, the merge with the object's mask and its undo record; text holds one
    mask and, per phrase, the instances found (counted as three masks)."""

    PROMPT = "prompt"  # clicks, a box or a starting slice mask: 4 masks
    MASK = "mask"  # a whole mask set (PUT .../mask): 4
    EDIT = "edit"  # undo, redo, reset: 2
    TEXT = "text"  # 1 + 3 per phrase

    def masks(self, phrases: int = 1) -> int:
        if self is RequestKind.TEXT:
            return 1 + 3 * max(1, phrases)
        return 2 if self is RequestKind.EDIT else 4


def request_bytes(voxels: int, kind: RequestKind, phrases: int = 1) -> int:
    """Memory a request needs while it runs, on top of what its session holds: its masks
    (:class:`RequestKind`), plus an allowance for the slice being worked on."""
    return kind.masks(phrases) * int(voxels) + 8 * _MIB


def voxels_of(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))
