"""Refusing request bodies larger than the upload limit before they are read into memory."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api_errors import error_response


def too_large_message(limit: int) -> str:
    return (f"The request body is larger than this server's upload limit of {limit / 1024**2:.0f} MiB: crop the "
            "volume to the region of interest, or ask the operator to raise --max-upload-mb.")


class BodySizeLimit:
    """ASGI middleware: 413 when Content-Length exceeds ``max_bytes``, or when a streamed body grows past it."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, "UploadTooLarge", too_large_message(self.max_bytes))
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, too_large_message(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)
