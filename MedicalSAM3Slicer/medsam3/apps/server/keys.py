"""Who may use the server: one key per user, stored only as its SHA-256 hash, with per-user quotas.

A key file (``medsam3 serve --key-file keys.toml``, or the same in JSON) names each user and the hash of their key::

    [defaults]              # optional: quotas for every user without their own
    max_sessions = 2
    memory_gb = 2.0

    [users]
    alice = "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
    bob = { key = "sha256:d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35", max_sessions = 4 }

Keys are random tokens (at least 16 characters), so a plain SHA-256 is enough to keep them unreadable in the file;
a request's key is hashed once and compared with every user's hash in constant time (a prefix, or the key with
more characters, is a different hash). The file is read again when it changes (``reload_if_changed``), so an
operator adds, removes or rotates a key without restarting; a file that no longer parses keeps the keys in force
and says why in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import MedSam3Error

log = logging.getLogger("medsam3.server")
MIN_KEY_CHARACTERS = 16
SINGLE_KEY_USER = "default"  # the one user of a server run with --api-key / MEDSAM3_API_KEY
RELOAD_CHECK_SECONDS = 1.0


class KeyFileError(MedSam3Error, ValueError):
    """The key file cannot be used."""


def key_hash(key: str) -> str:
    """The form a key takes in the key file: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    digest: bytes  # SHA-256 of the key
    max_sessions: int | None = None  # None: the server's share (see KeyRing.quota_sessions)
    memory_bytes: int | None = None


def _digest(name: str, text: object, where: str) -> bytes:
    if not isinstance(text, str) or not text.startswith("sha256:") or len(text) != 71:
        raise KeyFileError(f"{where}: user {name!r} needs a key hash \"sha256:<64 hex digits>\" (make a key and "
                           "its line "
                           f"with: python -m medsam3.apps.server.keys {name}).")
    try:
        return bytes.fromhex(text[7:])
    except ValueError:
        raise KeyFileError(f"{where}: the key hash of user {name!r} is not hexadecimal.") from None


def _quotas(values: dict, name: str, where: str) -> tuple[int | None, int | None]:
    sessions, memory = values.get("max_sessions"), values.get("memory_gb")
    if sessions is not None and (isinstance(sessions, bool) or not isinstance(sessions, int) or not
                                 1 <= sessions <= 100_000):
        raise KeyFileError(f"{where}: max_sessions of {name} must be a whole number from 1 to 100000.")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, (int, float)) or not
                               math.isfinite(memory) or not 0.01 <= memory <= 2**20):
        raise KeyFileError(f"{where}: memory_gb of {name} must be a number from 0.01 to 1048576.")
    return sessions, None if memory is None else int(memory * 1024**3)


def parse_key_file(text: str, where: str) -> list[User]:
    """The users of a key file's text (TOML, or JSON when it starts with ``{``)."""
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (ValueError, RecursionError) as error:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise KeyFileError(f"{where} is not valid TOML or JSON ({error}).") from None
    users = data.get("users") if isinstance(data, dict) else None
    defaults = data.get("defaults", {}) if isinstance(data, dict) else {}
    if not isinstance(users, dict) or not users or not isinstance(defaults, dict):
        raise KeyFileError(f"{where} needs a [users] table naming at least one user: alice = \"sha256:...\".")
    default_sessions, default_memory = _quotas(defaults, "[defaults]", where)
    parsed, seen = [], set()
    for name, entry in users.items():
        values = entry if isinstance(entry, dict) else {"key": entry}
        unknown = set(values) - {"key", "max_sessions", "memory_gb"}
        if unknown:
            raise KeyFileError(f"{where}: user {name!r} has unknown fields {sorted(unknown)}; use key, "
                               "max_sessions, memory_gb.")
        digest = _digest(name, values.get("key"), where)
        if digest in seen:
            raise KeyFileError(f"{where}: user {name!r} has the same key as another user; give each user their own.")
        seen.add(digest)
        sessions, memory = _quotas(values, name, where)
        parsed.append(User(str(name), digest, sessions or default_sessions,
                           memory if memory is not None else default_memory))
    return parsed


class KeyRing:
    """The users a server knows; :meth:`find` says whose key a request carries."""

    def __init__(self, users: list[User], path: Path | None = None, clock: Callable[[], float] = time.monotonic):
        self._users = list(users)
        self.path = path
        self._clock = clock
        self._stamp = self._file_stamp() if path else None
        self._checked = clock()
        self._lock = threading.Lock()

    @classmethod
    def single(cls, key: str) -> "KeyRing":
        return cls([User(SINGLE_KEY_USER, hashlib.sha256(key.encode("utf-8")).digest())])

    @classmethod
    def from_file(cls, path: str | os.PathLike, clock: Callable[[], float] = time.monotonic) -> "KeyRing":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise KeyFileError(f"Cannot read the key file {path}: {getattr(error, 'strerror', None) or error}.") \
                from None
        return cls(parse_key_file(text, str(path)), path, clock)

    @property
    def users(self) -> list[User]:
        return list(self._users)

    def find(self, key: str) -> User | None:
        """The user whose key this is, or None. Every user's hash is compared (constant time, no early exit)."""
        self.reload_if_changed()
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found = None
        for user in self._users:
            if hmac.compare_digest(digest, user.digest):
                found = user
        return found

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size

    def reload_if_changed(self, force: bool = False) -> bool:
        """Read the key file again when it changed (checked at most once a second); True when keys changed."""
        if self.path is None:
            return False
        now = self._clock()
        with self._lock:
            if not force and now - self._checked < RELOAD_CHECK_SECONDS:
                return False
            self._checked = now
            stamp = self._file_stamp()
            if stamp == self._stamp and not force:
                return False
            self._stamp = stamp
            try:
                users = parse_key_file(self.path.read_text(encoding="utf-8"), str(self.path))
            except (OSError, UnicodeDecodeError, KeyFileError) as error:
                log.error("the key file changed but cannot be used (%s); the keys read before stay in force", error)
                return False
            self._users = users
        log.info("key file read again: %d user(s)", len(users))
        return True

    def quota_sessions(self, user: User, server_max: int) -> int:
        """A user's session quota: their own, else an equal share of the server's sessions."""
        return min(server_max, user.max_sessions or max(1, server_max // max(1, len(self._users))))

    def quota_memory(self, user: User, server_capacity: int) -> int:
        """A user's memory quota: their own, else an equal share of what the budget can hold for sessions."""
        return min(server_capacity, user.memory_bytes or server_capacity // max(1, len(self._users)))


def new_user_line(name: str) -> tuple[str, str]:
    """A new random key for ``name`` and the key file line that admits it."""
    import secrets

    key = secrets.token_urlsafe(32)
    return key, f'{json.dumps(name)} = "{key_hash(key)}"'


if __name__ == "__main__":  # python -m medsam3.apps.server.keys NAME: a new key, and its line for the key file
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m medsam3.apps.server.keys NAME")
    new_key, line = new_user_line(sys.argv[1])
    print(f"key for {sys.argv[1]} (give it to them; it is not stored): {new_key}")
    print(f"line for the [users] table of the key file: {line}")
