"""The server's settings: where it listens, its API key and its limits."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from ..backend_choice import API_KEY_ENVIRONMENT_VARIABLE
from ..errors import MedSam3Error


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


@dataclass(frozen=True)
class ServerSettings:
    """Every knob of the server. Sizes are bytes, times seconds, rates requests per minute per client."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    require_api_key: bool = True
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_voxels: int = 512 * 512 * 1200
    max_sessions: int = 8
    idle_timeout_seconds: float = 30 * 60
    requests_per_minute: int = 1200
    log_level: str = "info"

    @classmethod
    def with_key_from_environment(cls, **values) -> "ServerSettings":
        """Settings whose key, when not given, comes from the ``MEDSAM3_API_KEY`` environment variable."""
        if not values.get("api_key"):
            values["api_key"] = os.environ.get(API_KEY_ENVIRONMENT_VARIABLE) or None
        return cls(**values)

    def check(self) -> "ServerSettings":
        """Refuse settings that would expose the model without a key, or that make no sense."""
        if self.require_api_key and not self.api_key:
            raise ServerSettingsError(f"The server needs an API key: pass --api-key or set "
                                      f"{API_KEY_ENVIRONMENT_VARIABLE} (or --no-api-key on a loopback address for a "
                                      "local test).")
        if not self.require_api_key and not is_loopback(self.host):
            raise ServerSettingsError(f"--no-api-key is allowed only when listening on loopback (127.0.0.1, ::1 or "
                                      f"localhost), not on {self.host}: anyone on the network could use the server.")
        if self.require_api_key and len(self.api_key) < 16:
            raise ServerSettingsError("The API key is too short: use at least 16 random characters, for example "
                                      "the output of: python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
        for name in ("max_upload_bytes", "max_voxels", "max_sessions", "requests_per_minute"):
            if getattr(self, name) < 1:
                raise ServerSettingsError(f"{name.replace('_', '-')} must be at least 1.")
        if self.idle_timeout_seconds <= 0:
            raise ServerSettingsError("The idle timeout must be positive.")
        if not 0 <= self.port <= 65535:
            raise ServerSettingsError(f"Port {self.port} is not a TCP port (0 to 65535).")
        return self

    def public_limits(self) -> dict:
        """The limits a client may be told (never the key)."""
        return {"max_upload_bytes": self.max_upload_bytes, "max_voxels": self.max_voxels,
                "max_sessions": self.max_sessions, "idle_timeout_seconds": self.idle_timeout_seconds,
                "requests_per_minute": self.requests_per_minute}

    def __repr__(self) -> str:  # never print the key
        shown = "set" if self.api_key else "none"
        return (f"ServerSettings(host={self.host!r}, port={self.port}, api_key=<{shown}>, "
                f"require_api_key={self.require_api_key}, limits={self.public_limits()})")
