"""The message of a request body larger than the server's limit (the gate, gate.py, refuses it before reading)."""

from __future__ import annotations


def too_large_message(limit: int, upload: bool) -> str:
    if upload:
        return (f"The request body is larger than this server's upload limit of {limit / 1024**2:.0f} MiB: crop the "
                "volume to the region of interest, or ask the operator to raise --max-upload-mb.")
    return (f"The request body is larger than this server's limit of {limit / 1024**2:.0f} MiB for a JSON request: "
            "send a smaller mask (its bounding box only), or ask the operator to raise --max-json-mb.")
