"""Errors the server answers with: a status code and ``{"error": {"kind": ..., "message": ...}}``."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class ApiError(Exception):
    """A request the server refuses, with the status and the one-line message the user sees."""

    def __init__(self, status: int, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


def error_response(status: int, kind: str, message: str, retry_after: float | None = None) -> JSONResponse:
    headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))} if retry_after is not None else None
    return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status, headers=headers)
