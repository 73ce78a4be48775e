"""The server's settings: where it listens, its API key and its limits."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass

from ...transports.backend_choice import API_KEY_ENVIRONMENT_VARIABLE
from ...errors import MedSam3Error


class ServerSettingsError(MedSam3Error, ValueError):
    """The server cannot start with these settings."""


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_RANGES = {  # every numeric setting: finite and within these bounds
    "port": (0, 65535),
    "max_upload_bytes": (1, 2**40),
    "max_voxels": (1, 2**40),
    "max_sessions": (1, 100_000),
    "idle_timeout_seconds": (1, 30 * 24 * 3600),
    "requests_per_minute": (1, 10**9),
    "memory_budget_bytes": (16 * 1024**2, 2**50),
    "max_phrases": (1, 1000),
    "max_slice_phrases": (1, 10**9),
    "max_json_bytes": (1024, 2**40),
    "read_timeout_seconds": (0.1, 24 * 3600),
    "header_timeout_seconds": (0.1, 24 * 3600),
}


@dataclass(frozen=True)
class ServerSettings:
    """Every knob of the server. Sizes are bytes, times seconds, rates requests per minute per client."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    key_file: str | None = None  # users and their hashed keys (keys.py); instead of api_key
    require_api_key: bool = True
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_voxels: int = 512 * 512 * 1200
    max_sessions: int = 8
    idle_timeout_seconds: float = 30 * 60
    requests_per_minute: int = 1200
    memory_budget_bytes: int = 8 * 1024**3  # volumes, masks, cached encodings and work in flight, all sessions
    max_phrases: int = 10  # typed phrases in one request
    max_slice_phrases: int = 4000  # slices x phrases one request may run through the model
    max_json_bytes: int = 64 * 1024 * 1024  # any request but an upload (a mask's bits are the largest)
    read_timeout_seconds: float = 30.0  # a body that stops arriving this long gets 408
    header_timeout_seconds: float = 30.0  # a connection whose request headers take longer is closed (408)
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-For is believed
    log_level: str = "info"

    @classmethod
    def with_key_from_environment(cls, **values) -> "ServerSettings":
        """Settings whose key, when not given, comes from the ``MEDSAM3_API_KEY`` environment variable."""
        if not values.get("api_key") and not values.get("key_file"):
            values["api_key"] = os.environ.get(API_KEY_ENVIRONMENT_VARIABLE) or None
        return cls(**values)

    def check(self) -> "ServerSettings":
        """Refuse settings that would expose the model without a key, or that make no sense."""
        if self.require_api_key and not self.api_key and not self.key_file:
            raise ServerSettingsError(f"The server needs an API key: pass --api-key or set "
                                      f"{API_KEY_ENVIRONMENT_VARIABLE}, or give users their own keys with --key-file "
                                      "(or --no-api-key on a loopback address for a local test).")
        if self.api_key and self.key_file:
            raise ServerSettingsError("Give either --api-key (one key for everyone) or --key-file (a key per user), "
                                      "not both: add the shared key's user to the key file instead.")
        if not self.require_api_key and not is_loopback(self.host):
            raise ServerSettingsError(f"--no-api-key is allowed only when listening on loopback (127.0.0.1, ::1 or "
                                      f"localhost), not on {self.host}: anyone on the network could use the server.")
        if self.require_api_key and self.api_key and len(self.api_key) < 16:
            raise ServerSettingsError("The API key is too short: use at least 16 random characters, for example "
                                      "the output of: python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise ServerSettingsError(f"{name.replace('_', '-')} must be a finite number from {low:g} to "
                                          f"{high:g}; got {value!r}.")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ServerSettingsError(f"Trusted proxy {proxy!r} is not an IP address or network (e.g. 10.0.0.5 "
                                          "or 10.0.0.0/24).") from None
        return self

    def public_limits(self) -> dict:
        """The limits a client may be told (never the key)."""
        return {"max_upload_bytes": self.max_upload_bytes, "max_voxels": self.max_voxels,
                "max_sessions": self.max_sessions, "idle_timeout_seconds": self.idle_timeout_seconds,
                "requests_per_minute": self.requests_per_minute, "memory_budget_bytes": self.memory_budget_bytes,
                "max_phrases": self.max_phrases, "max_slice_phrases": self.max_slice_phrases}

    def __repr__(self) -> str:  # never print the key
        shown = "set" if self.api_key else f"file {self.key_file}" if self.key_file else "none"
        return (f"ServerSettings(host={self.host!r}, port={self.port}, api_key=<{shown}>, "
                f"require_api_key={self.require_api_key}, limits={self.public_limits()})")
