"""The gate every request but ``GET /health`` passes before any of its body is read: rate limit, API key, client
version, body size, then the body itself, read against a deadline and counted in the memory budget as it arrives.

A pure ASGI middleware, ahead of routing: FastAPI reads and parses a JSON body before a route's dependencies run,
so a check in a dependency comes after the body is in memory. Here a request without a valid key costs its
headers only. The body is then read in full by the gate (a JSON body up to ``max_json_bytes``, an upload up to
``max_upload_bytes``), each received byte reserved first, in the caller's share of the budget and the server's;
a body that stops arriving for ``read_timeout_seconds`` gets 408 and gives its reservation back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ... import __version__
from ...transports.version_compatibility import CLIENT_VERSION_HEADER, is_compatible, mismatch_message
from .api_errors import ApiError, error_response
from .body_limit import too_large_message
from .keys import SINGLE_KEY_USER, KeyRing, User
from .memory_budget import MemoryBudget, Reservation
from .rate_limit import RateLimiter
from .settings import ServerSettings

log = logging.getLogger("medsam3.server")
USER = "medsam3.user"  # scope entries the gate leaves for the routes
BUDGET = "medsam3.budget"
UPLOAD = "medsam3.upload"  # (body, reservation) of POST /sessions; the route takes both
JSON_MEMORY_FACTOR = 4  # a JSON body's bytes, its parsed text, the validated strings, the decoded bits
OPEN_ROUTES = {("GET", "/health")}


def is_upload(scope: Scope) -> bool:
    return scope["method"] == "POST" and scope["path"].rstrip("/") == "/sessions"


class RequestGate:
    def __init__(self, app: ASGIApp, settings: ServerSettings, keys: KeyRing | None, limiter: RateLimiter,
                 budget: MemoryBudget, memory_quota: Callable[[User], int]):
        self.app = app
        self.settings = settings
        self.keys = keys
        self.limiter = limiter
        self.budget = budget
        self.memory_quota = memory_quota
        self._user_budgets: dict[str, MemoryBudget] = {}
        self.local_user = User(SINGLE_KEY_USER, b"")

    def user_budget(self, user: User) -> MemoryBudget:
        """The user's share of the server's budget (its quota follows the key file)."""
        budget = self._user_budgets.get(user.name)
        quota = self.memory_quota(user)
        if budget is None:
            shared = self.keys is None or self.keys.path is None  # one key: the user's share is the whole budget
            budget = self._user_budgets[user.name] = MemoryBudget(
                quota, parent=self.budget,
                name="this server's memory budget for all sessions (less the cache's share)" if shared else
                f"the memory budget of your key ({user.name})",
                raised_by="--memory-budget-gb" if shared else "memory_gb for your key in the key file")
        budget.total = quota
        return budget

    # --- the checks on headers -------------------------------------------------------------------------------------
    def _identify(self, scope: Scope, headers: dict[bytes, list[bytes]]) -> User:
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.limiter.allow(client)
        if wait:
            raise ApiError(429, "RateLimited", f"Too many requests: this server accepts "
                           f"{self.settings.requests_per_minute} per minute per client. Retry in {wait:.0f} s.",
                           retry_after=wait)
        user = self._user_of(scope, headers) if self.settings.require_api_key else self.local_user
        client_version = b"".join(headers.get(CLIENT_VERSION_HEADER.lower().encode(), [])[:1]).decode("latin-1")
        if client_version and not is_compatible(client_version, __version__):
            raise ApiError(426, "VersionMismatch", mismatch_message(client_version, __version__))
        return user

    def _user_of(self, scope: Scope, headers: dict[bytes, list[bytes]]) -> User:
        """The user whose key the request carries (exactly one Authorization header, ``Bearer <key>``)."""
        values = headers.get(b"authorization", [])
        scheme, _, token = (values[0].decode("latin-1") if len(values) == 1 else "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            query = scope.get("query_string", b"").decode("latin-1").lower()
            in_url = " A key in the URL is not read (it would end up in logs)." if ("key" in query or "token" in
                                                                                     query) else ""
            raise ApiError(401, "MissingApiKey", "This server needs an API key: send it as 'Authorization: Bearer "
                           "<key>' (Slicer: the server settings; command line: --api-key)." + in_url)
        user = self.keys.find(token.strip()) if self.keys is not None else None
        if user is None:
            raise ApiError(403, "WrongApiKey", "The API key is not this server's key (nor one of its users' keys): "
                           "check it with the server's operator.")
        return user

    def _limit(self, scope: Scope) -> tuple[int, int]:
        """The largest body of this request, and the memory each of its bytes costs."""
        if is_upload(scope):
            return self.settings.max_upload_bytes, 1
        return self.settings.max_json_bytes, JSON_MEMORY_FACTOR

    # --- the body ---------------------------------------------------------------------------------------------------
    async def _read_body(self, scope: Scope, receive: Receive, limit: int, factor: int,
                         budget: MemoryBudget) -> tuple[bytearray, Reservation] | None:
        """The whole body, each byte reserved before it is kept; None when the client went away."""
        what = "This upload" if factor == 1 else "This request's body"
        reservation = budget.reserve(0, what)
        body = bytearray()
        try:
            while True:
                try:
                    message = await asyncio.wait_for(receive(), self.settings.read_timeout_seconds)
                except asyncio.TimeoutError:
                    raise ApiError(408, "RequestTimeout", f"The request body stopped arriving for more than "
                                   f"{self.settings.read_timeout_seconds:g} s (the server's read timeout): send "
                                   "it again on a steadier connection.") from None
                if message["type"] == "http.disconnect":
                    reservation.release()
                    return None
                chunk = message.get("body", b"")
                if len(body) + len(chunk) > limit:
                    raise ApiError(413, "UploadTooLarge" if factor == 1 else "RequestTooLarge",
                                   too_large_message(limit, factor == 1))
                if chunk:
                    reservation.grow(factor * (len(body) + len(chunk)))
                    body += chunk
                if not message.get("more_body", False):
                    return body, reservation
        except BaseException:
            reservation.release()
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in OPEN_ROUTES:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, list[bytes]] = {}
        for name, value in scope.get("headers") or []:
            headers.setdefault(name.lower(), []).append(value)
        limit, factor = self._limit(scope)
        try:
            user = self._identify(scope, headers)
            budget = self.user_budget(user)
            declared = b"".join(headers.get(b"content-length", [])[:1])
            if declared.isdigit() and int(declared) > limit:
                raise ApiError(413, "UploadTooLarge" if factor == 1 else "RequestTooLarge",
                               too_large_message(limit, factor == 1))
            if declared.isdigit() and factor * int(declared) > budget.capacity:  # could never fit: 413 at once
                budget.refuse_if_never_fits(factor * int(declared), "This upload" if factor == 1 else "This request")
            read = await self._read_body(scope, receive, limit, factor, budget)
        except ApiError as error:
            await error_response(error.status, error.kind, error.message, error.retry_after)(scope, receive, send)
            return
        if read is None:
            return  # the client went away
        body, reservation = read
        del read
        scope[USER], scope[BUDGET] = user, budget
        if factor == 1:
            scope[UPLOAD] = (body, reservation)
            payload = b""
        else:
            payload = bytes(body)
        del body  # the route owns an upload's body; a JSON body lives on as the payload only
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": payload, "more_body": False}
            return await receive()  # after the body: the client's disconnect, for work that watches it

        try:
            await self.app(scope, replay, send)
        finally:
            left = scope.pop(UPLOAD, None)
            if left is not None:
                left[1].release()
            if factor > 1:
                reservation.release()
