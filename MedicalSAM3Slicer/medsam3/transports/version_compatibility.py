"""Which client and server versions work together: the same major.minor release (0.1.x with 0.1.x).

The wire format may change between minor releases; patch releases keep it. Both sides use these functions, so
the server's refusal and the client's own check name the same matching versions.
"""

from __future__ import annotations

from .. import __version__

CLIENT_VERSION_HEADER = "X-MedSam3-Client-Version"


def release_series(version: str) -> str:
    """ "0.1.3" -> "0.1" (the part that must match)."""
    parts = version.strip().split(".")
    return ".".join(parts[:2])


def matching_versions(version: str = __version__) -> str:
    """The versions a peer of ``version`` must run, written for a person: "0.1.x"."""
    return f"{release_series(version)}.x"


def is_compatible(client_version: str, server_version: str = __version__) -> bool:
    return release_series(client_version) == release_series(server_version)


def mismatch_message(client_version: str, server_version: str) -> str:
    """What a user whose client and server do not match is told."""
    return (f"The server runs medsam3 {server_version} and works with clients {matching_versions(server_version)}, "
            f"but this client is medsam3 {client_version}. Install medsam3 {matching_versions(server_version)} "
            f"where the client runs (pip install 'medsam3=={release_series(server_version)}.*'), or run medsam3 "
            f"{matching_versions(client_version)} on the server.")
