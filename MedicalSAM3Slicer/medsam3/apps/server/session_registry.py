"""The server's open sessions: ids, per-session locks, the session cap and the idle timeout.

Requests on one session are serialised by its lock; different sessions proceed concurrently. A session idle
longer than the timeout is closed; when the server's cap or the user's quota is reached, the user's own session
idle the longest is closed to make room (never another user's). A session belongs to the user (key) that opened it:
for anyone else it does not exist (404, as for an unknown id). Its owner is told why a closed session was closed.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ...transports.backend import Session
from ...errors import Cancelled
from .api_errors import ApiError
from .memory_budget import Reservation

_REMEMBERED_CLOSED = 1000


@dataclass
class OpenSession:
    session: Session
    volume_shape: tuple[int, int, int]
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    active_requests: int = 0
    reservation: Reservation | None = None  # the memory the session holds, from the server's budget
    stops: set[threading.Event] = field(default_factory=set)  # one per request running or waiting on it
    slice_counts: dict[str, int] = field(default_factory=dict)  # slices in each view, for a request's cost
    owner: str | None = None  # the user whose key opened it


class SessionRegistry:
    def __init__(self, max_sessions: int, idle_timeout_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_sessions = max_sessions
        self.idle_timeout_seconds = idle_timeout_seconds
        self._clock = clock
        self._sessions: dict[str, OpenSession] = {}
        self._closed: OrderedDict[str, tuple[str | None, str]] = OrderedDict()  # id -> (owner, why it was closed)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def count(self, owner: str | None) -> int:
        """How many sessions ``owner`` has open (None: everyone's)."""
        with self._lock:
            return sum(1 for entry in self._sessions.values() if owner is None or entry.owner == owner)

    def _entry_locked(self, session_id: str, owner: str | None) -> OpenSession:
        """The session, if it exists and belongs to ``owner`` (None: anyone's), else the 404 an unknown id gets."""
        entry = self._sessions.get(session_id)
        if entry is None or (owner is not None and entry.owner != owner):
            raise self._unknown(session_id, owner)
        return entry

    # --- closing ------------------------------------------------------------------------------------------
    def _remove_locked(self, session_id: str, reason: str) -> OpenSession:
        """Take a session out of the registry (the caller holds the registry lock) and remember why."""
        entry = self._sessions.pop(session_id)
        self._closed[session_id] = (entry.owner, reason)
        while len(self._closed) > _REMEMBERED_CLOSED:
            self._closed.popitem(last=False)
        return entry

    @staticmethod
    def _release(entries: list[OpenSession]) -> None:
        """Close removed sessions, each after any request still running on it (outside the registry lock)."""
        for entry in entries:
            for stop in list(entry.stops):
                stop.set()  # a propagation still running on a closed session stops at its next slice
            with entry.lock:
                entry.session.close()
                if entry.reservation is not None:
                    entry.reservation.release()

    def close_idle(self) -> int:
        """Close every session idle longer than the timeout; returns how many."""
        now = self._clock()
        with self._lock:
            expired = [self._remove_locked(sid, f"it was idle for more than {self.idle_timeout_seconds:g} s (the "
                                                "server's idle timeout); upload the volume again")
                       for sid, entry in list(self._sessions.items())
                       if entry.active_requests == 0 and now - entry.last_used > self.idle_timeout_seconds]
        self._release(expired)
        return len(expired)

    def close(self, session_id: str, owner: str | None = None) -> None:
        with self._lock:
            self._entry_locked(session_id, owner)
            entry = self._remove_locked(session_id, "it was deleted")
        self._release([entry])

    def close_all(self) -> None:
        with self._lock:
            entries = [self._remove_locked(sid, "the server stopped") for sid in list(self._sessions)]
        self._release(entries)

    # --- opening and using --------------------------------------------------------------------------------
    def cancel(self, session_id: str, owner: str | None = None) -> int:
        """Ask every request running or waiting on the session to stop; returns how many were asked."""
        with self._lock:
            entry = self._entry_locked(session_id, owner)
            stops = list(entry.stops)
        for stop in stops:
            stop.set()
        return len(stops)

    def peek(self, session_id: str, owner: str | None = None) -> OpenSession:
        """The session's entry without waiting for its lock (to check a request before it queues)."""
        with self._lock:
            return self._entry_locked(session_id, owner)

    def add(self, session: Session, volume_shape: tuple[int, int, int],
            reservation: Reservation | None = None, slice_counts: dict[str, int] | None = None,
            owner: str | None = None, owner_max_sessions: int | None = None) -> str:
        """Register a new session of ``owner``. When the server's cap or the owner's quota is reached, the owner's
        own session idle the longest is closed; when the owner has none to give up, 429."""
        self.close_idle()
        evicted = []
        with self._lock:
            own = [(entry.last_used, sid) for sid, entry in self._sessions.items() if entry.owner == owner]
            over_quota = owner_max_sessions is not None and len(own) >= owner_max_sessions
            if over_quota or len(self._sessions) >= self.max_sessions:
                idle = [(used, sid) for used, sid in own if self._sessions[sid].active_requests == 0]
                if not idle:
                    session.close()
                    if reservation is not None:
                        reservation.release()
                    if over_quota:
                        message = (f"Your key may hold {owner_max_sessions} session(s) and all of them are working "
                                   "on requests. Try again when one is done, or close one.")
                    elif own:
                        message = (f"The server is busy: all {self.max_sessions} sessions are in use and yours are "
                                   "working on requests. Try again shortly.")
                    else:
                        message = (f"The server is busy: all {self.max_sessions} sessions are in use by other users. "
                                   "Try again later, or ask the operator for more sessions (--max-sessions).")
                    raise ApiError(429, "ServerBusy", message, retry_after=5)
                limit = (f"your key's limit of {owner_max_sessions} sessions" if over_quota
                         else f"the server's limit of {self.max_sessions} sessions")
                evicted.append(self._remove_locked(min(idle)[1], f"{limit} was reached and it was your session "
                                                   "idle the longest; upload the volume again"))
            session_id = secrets.token_urlsafe(16)
            self._sessions[session_id] = OpenSession(session, volume_shape, self._clock(), reservation=reservation,
                                                     slice_counts=dict(slice_counts or {}), owner=owner)
        self._release(evicted)
        return session_id

    def _unknown(self, session_id: str, owner: str | None = None) -> ApiError:
        closed_owner, reason = self._closed.get(session_id, (None, ""))
        if reason and (owner is None or closed_owner == owner):
            return ApiError(404, "SessionClosed", f"Session {session_id} was closed because {reason}.")
        return ApiError(404, "UnknownSession", f"There is no session {session_id} on this server: open a session "
                                               "by uploading the volume first.")

    @contextmanager
    def use(self, session_id: str, stop: threading.Event | None = None,
            owner: str | None = None) -> Iterator[OpenSession]:
        """The session, locked for one request (other requests on it wait; other sessions do not). ``stop`` is
        set by :meth:`cancel` and when the session is closed."""
        self.close_idle()
        with self._lock:
            entry = self._entry_locked(session_id, owner)
            entry.active_requests += 1
            if stop is not None:
                entry.stops.add(stop)
        try:
            with entry.lock:
                if stop is not None and stop.is_set():
                    raise Cancelled()
                yield entry
        finally:
            with self._lock:
                entry.active_requests -= 1
                entry.last_used = self._clock()
                entry.stops.discard(stop)
