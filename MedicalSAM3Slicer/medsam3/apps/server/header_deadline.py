"""A deadline for a request's headers: uvicorn times out idle keep-alive connections, but not a client that opens
a connection and sends its headers slowly or never finishes them. Such a connection gets 408 and is closed."""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.h11_impl import H11Protocol


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps({"error": {"kind": "RequestTimeout", "message": f"The request headers did not arrive within "
                                 f"{seconds:g} s (the server's header timeout): send the request again."}}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline from a connection's first byte (or the end of its previous
    request) to the end of the next request's headers."""

    header_timeout_seconds = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_deadline(self) -> None:
        if self._header_timer is None and self._waiting_for_headers():
            self._header_timer = self.loop.call_later(self.header_timeout_seconds, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.write(_timeout_response(self.header_timeout_seconds))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._arm_header_deadline()  # the first bytes of a request after a keep-alive pause
        super().data_received(data)
        if not self._waiting_for_headers():
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm_header_deadline()  # an idle keep-alive connection is uvicorn's own timeout's

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)


def header_deadline_protocol(seconds: float) -> type[HeaderDeadlineProtocol]:
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_seconds": float(seconds)})
