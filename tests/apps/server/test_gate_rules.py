"""The request gate's rules, driven as the ASGI middleware it is (no server, no socket; issue 23 mutation testing of
gate.py): which requests are refused from their headers alone (401 / 403 / 426 / 429 / 413, each with the message
the user reads, before one byte of the body is read), how the body is counted in the memory budget while it is
held and given back after, and what the route behind the gate receives (the user, the body, the client's next
message)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from medsam3 import __version__
from medsam3.apps.server import ServerSettings
from medsam3.apps.server.body_limit import too_large_message
from medsam3.apps.server.gate import BUDGET, UPLOAD, USER, RequestGate
from medsam3.apps.server.keys import KeyRing, User
from medsam3.apps.server.memory_budget import MemoryBudget
from medsam3.apps.server.rate_limit import RateLimiter
from medsam3.transports.version_compatibility import mismatch_message

from server_harness import FakeClock

KEY = "the-servers-key-0123456789abcdef"
MIB = 1024**2
MISSING = ("This server needs an API key: send it as 'Authorization: Bearer <key>' (Slicer: the server settings; "
           "command line: --api-key).")
WRONG = "The API key is not this server's key (nor one of its users' keys): check it with the server's operator."
STALL = object()  # the client sends nothing more


class Client:
    """A gate around a route that records what it got, and the answers one request at a time."""

    def __init__(self, keys: KeyRing | None = KeyRing.single(KEY), budget_bytes: int = 64 * MIB,
                 quota=None, **settings):
        settings.setdefault("api_key", KEY)
        self.settings = ServerSettings(**settings)
        self.clock = FakeClock()
        self.budget = MemoryBudget(budget_bytes)
        self.seen: dict = {}
        self.keep_upload = False  # the route takes the upload and its reservation (a session holds them)
        self.gate = RequestGate(self._route, self.settings, keys, RateLimiter(self.settings.requests_per_minute,
                                                                              self.clock),
                                self.budget, quota or (lambda user: self.budget.capacity))

    async def _route(self, scope, receive, send):
        if scope["type"] != "http":
            self.seen["type"] = scope["type"]
            return
        message = await receive()
        assert message == {"type": "http.request", "body": message["body"], "more_body": False}  # the whole body
        self.seen.update(user=scope.get(USER), budget=scope.get(BUDGET), body=message["body"], used=self.budget.used,
                         upload=scope.pop(UPLOAD, None) if self.keep_upload else scope.get(UPLOAD),
                         next=await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def request(self, method: str, path: str, headers: dict | None = None, chunks=(), query: bytes = b"",
                client=("10.0.0.1", 4000), length: int | None = None) -> tuple[int, dict, dict]:
        """(status, JSON answer, response headers); ``self.reads`` counts the body messages the gate asked for."""
        headers = {"authorization": f"Bearer {KEY}", **{k.lower(): v for k, v in (headers or {}).items()}}
        if length is not None:
            headers["content-length"] = str(length)
        scope = {"type": "http", "method": method, "path": path, "query_string": query, "client": client,
                 "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
                             if v is not None]}
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} if isinstance(c, bytes)
                    else c for i, c in enumerate(chunks)] or [{"type": "http.request", "body": b"", "more_body": False}]
        self.reads, sent = 0, []

        async def receive():
            self.reads += 1
            message = messages.pop(0) if messages else {"type": "http.disconnect"}
            if message is STALL:
                await asyncio.sleep(3600)
            return message

        async def send(message):
            sent.append(message)

        asyncio.run(self.gate(scope, receive, send))
        start = sent[0]
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return start["status"], json.loads(body), {k.decode(): v.decode() for k, v in start.get("headers", [])}


def error(answer: dict) -> tuple[str, str]:
    return answer["error"]["kind"], answer["error"]["message"]


def test_a_request_without_the_exact_key_is_refused_from_its_headers_with_what_to_do():
    client = Client()
    refused = [
        ({"authorization": None}, b"", 401, ("MissingApiKey", MISSING)),
        ({"authorization": f"Basic {KEY}"}, b"", 401, ("MissingApiKey", MISSING)),
        ({"authorization": "Bearer    "}, b"", 401, ("MissingApiKey", MISSING)),
        ({"authorization": KEY}, b"", 401, ("MissingApiKey", MISSING)),
        ({"authorization": None}, b"api_KEY=" + KEY.encode(), 401,
         ("MissingApiKey", MISSING + " A key in the URL is not read (it would end up in logs).")),
        ({"authorization": None}, b"Token=1", 401,
         ("MissingApiKey", MISSING + " A key in the URL is not read (it would end up in logs).")),
        ({"authorization": None}, b"slice=1", 401, ("MissingApiKey", MISSING)),
        ({"authorization": f"Bearer {KEY[:-1]}"}, b"", 403, ("WrongApiKey", WRONG)),
        ({"authorization": f"Bearer {KEY}x"}, b"", 403, ("WrongApiKey", WRONG)),
        ({"authorization": "Bearer wrong-key"}, b"", 403, ("WrongApiKey", WRONG)),
    ]
    for headers, query, status, expected in refused:
        answer = client.request("POST", "/sessions/s/prompts", headers, [b"{}"], query=query, length=300 * MIB)
        assert (answer[0], error(answer[1])) == (status, expected), headers
        assert client.reads == 0 and not client.seen  # answered from the headers: no byte of the body read
    # two Authorization headers (names in any case) are one too many, even when one is right
    scope_headers = [(b"Authorization", f"Bearer {KEY}".encode()), (b"authorization", b"Bearer other")]
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        raise AssertionError("the body of a refused request is read")

    asyncio.run(client.gate({"type": "http", "method": "GET", "path": "/info", "headers": scope_headers,
                             "client": ("10.0.0.1", 1)}, receive, send))
    assert sent[0]["status"] == 401


def test_the_exact_key_in_any_case_of_bearer_and_with_spaces_reaches_the_route_as_its_user():
    for authorization in (f"Bearer {KEY}", f"bearer {KEY}", f"BEARER  {KEY} "):
        client = Client()
        status, _, _ = client.request("POST", "/sessions/s/text", {"Authorization": authorization}, [b'{"a": 1}'])
        assert status == 200 and client.seen["user"].name == "default" and client.seen["body"] == b'{"a": 1}'
    users = KeyRing([User("ann", b"\0" * 32), User("bob", hashlib.sha256(b"bobs-key").digest())])
    client = Client(keys=users)
    assert client.request("GET", "/info", {"authorization": "Bearer bobs-key"})[0] == 200
    assert client.seen["user"].name == "bob"


def test_without_a_required_key_every_request_is_the_local_user_and_health_needs_no_key():
    client = Client(keys=None, api_key=None, require_api_key=False)
    assert client.request("GET", "/info", {"authorization": None})[0] == 200
    assert client.seen["user"] == client.gate.local_user and client.seen["user"].name == "default"
    client = Client(keys=None, api_key=None)  # a key is required but none is configured: no key is right
    assert client.request("GET", "/info")[0] == 403
    client = Client(requests_per_minute=1)
    for _ in range(3):  # /health is neither keyed nor counted by the rate limit
        assert client.request("GET", "/health", {"authorization": None})[0] == 200
    assert client.request("GET", "/info")[0] == 200
    asyncio.run(client.gate({"type": "lifespan"}, None, None))
    assert client.seen["type"] == "lifespan"
    assert Client().request("POST", "/health", {"authorization": None})[0] == 401  # only GET /health is open


def test_the_rate_limit_answers_429_per_client_with_the_wait_before_the_key_is_checked():
    client = Client(requests_per_minute=2)
    for _ in range(2):
        assert client.request("GET", "/info")[0] == 200
    status, answer, headers = client.request("GET", "/info", {"authorization": "Bearer wrong"}, length=300 * MIB)
    assert (status, error(answer)) == (429, ("RateLimited", "Too many requests: this server accepts 2 per minute "
                                                           "per client. Retry in 30 s."))
    assert headers["retry-after"] == "30" and client.reads == 0
    assert client.request("GET", "/info", client=("10.0.0.2", 4000))[0] == 200  # another client is not held back
    client.clock.advance(30)
    assert client.request("GET", "/info")[0] == 200
    anonymous = Client(requests_per_minute=1)  # no client address: all such requests share one bucket
    assert anonymous.request("GET", "/info", client=None)[0] == 200
    assert anonymous.request("GET", "/info", client=None)[0] == 429


def test_a_client_of_another_release_gets_426_with_what_to_install():
    major, minor, *_ = __version__.split(".")
    other = f"{major}.{int(minor) + 1}.0"
    client = Client()
    status, answer, _ = client.request("GET", "/info", {"X-MedSam3-Client-Version": other})
    assert (status, error(answer)) == (426, ("VersionMismatch", mismatch_message(other, __version__)))
    assert client.request("GET", "/info", {"x-medsam3-client-version": f"{major}.{minor}.99"})[0] == 200
    assert client.request("GET", "/info", {"X-MedSam3-Client-Version": ""})[0] == 200


@pytest.mark.parametrize("path, upload", [("/sessions", True), ("/sessions/", True), ("/sessions/s/prompts", False),
                                          ("/sessionsX", False)])
def test_a_body_over_its_limit_is_413_declared_or_streamed_and_one_at_the_limit_passes(path, upload):
    limit = 2048
    client = Client(max_upload_bytes=limit if upload else 10 * limit, max_json_bytes=limit if not upload else 1024)
    kind = "UploadTooLarge" if upload else "RequestTooLarge"
    message = too_large_message(limit, upload)
    status, answer, _ = client.request("POST", path, chunks=[b"x" * (limit + 1)], length=limit + 1)
    assert (status, error(answer), client.reads) == (413, (kind, message), 0)  # declared: before the body
    status, answer, _ = client.request("POST", path, chunks=[b"x" * 1000, b"x" * 1000, b"x" * 49])  # streamed
    assert (status, error(answer)) == (413, (kind, message)) and client.budget.used == 0
    assert client.request("POST", path, chunks=[b"x" * 1000, b"", b"x" * 1048], length=limit)[0] == 200
    if upload:  # the route gets the whole upload with its reservation, 1 byte per byte; the replayed body is empty
        body, reservation = client.seen["upload"]
        assert (bytes(body), client.seen["body"], client.seen["used"]) == (b"x" * limit, b"", limit)
    else:  # a JSON body costs 4 bytes per byte while it is held
        assert (client.seen["body"], client.seen["used"], client.seen["upload"]) == (b"x" * limit, 4 * limit, None)
    assert client.budget.used == 0  # given back after the route
    assert client.seen["next"] == {"type": "http.disconnect"}  # after the body: the client's next message


def test_a_body_that_could_never_fit_the_budget_is_413_from_its_declared_size():
    client = Client(budget_bytes=16 * MIB, max_json_bytes=64 * MIB)
    status, answer, _ = client.request("POST", "/sessions/s/prompts", length=4 * MIB + 1)  # x 4 > 16 MiB
    assert status == 413 and error(answer)[0] == "OverMemoryBudget" and client.reads == 0
    assert error(answer)[1].startswith("This request needs about 16 MiB; this server's memory budget for all "
                                       "sessions (less the cache's share) is 16 MiB.")
    status, answer, _ = client.request("POST", "/sessions", length=16 * MIB + 1)
    assert status == 413 and error(answer)[1].startswith("This upload needs about 16 MiB") and client.reads == 0
    status, _, _ = client.request("POST", "/sessions/s/prompts", chunks=[b"x" * 100], length=4 * MIB)
    assert status == 200  # exactly the budget could fit: read, not refused from its headers
    held = client.budget.reserve(15 * MIB, "another session")
    status, answer, _ = client.request("POST", "/sessions/s/prompts", chunks=[b"x" * MIB])  # fits, not now
    assert status == 429 and error(answer)[1].startswith("This request's body needs about 4 MiB")
    status, answer, _ = client.request("POST", "/sessions", chunks=[b"x" * MIB, b"x" * MIB])
    assert status == 429 and error(answer)[1].startswith("This upload needs about 1 MiB, but 16 MiB")
    held.release()
    assert client.budget.used == 0


def test_an_empty_body_holds_nothing_and_a_message_may_leave_out_body_and_more_body():
    client = Client()
    assert client.request("POST", "/sessions/s/prompts", chunks=[{"type": "http.request"}])[0] == 200
    assert (client.seen["body"], client.seen["used"]) == (b"", 0)
    full = client.budget.reserve(client.budget.total, "everything")
    assert client.request("POST", "/sessions/s/prompts", chunks=[b""])[0] == 200  # an empty body fits a full budget
    full.release()


def test_an_upload_the_route_took_stays_held_and_one_it_left_is_given_back():
    client = Client()
    client.keep_upload = True
    assert client.request("POST", "/sessions", chunks=[b"x" * 1000])[0] == 200
    body, reservation = client.seen["upload"]
    assert client.budget.used == 1000  # held for the session the route made of it
    reservation.release()
    client.keep_upload = False
    assert client.request("POST", "/sessions", chunks=[b"x" * 1000])[0] == 200
    assert client.budget.used == 0


def test_a_stalled_or_abandoned_body_gives_its_memory_back():
    client = Client(read_timeout_seconds=0.1)
    status, answer, _ = client.request("POST", "/sessions/s/prompts", chunks=[b"x" * 1000, STALL], length=5000)
    assert (status, error(answer)) == (408, ("RequestTimeout", "The request body stopped arriving for more than "
                                             "0.1 s (the server's read timeout): send it again on a steadier "
                                             "connection."))
    assert client.budget.used == 0
    messages = [{"type": "http.request", "body": b"x" * 100, "more_body": True}, {"type": "http.disconnect"}]

    async def receive():
        return messages.pop(0)

    async def send(message):
        raise AssertionError("an answer to a client that went away")

    asyncio.run(client.gate({"type": "http", "method": "POST", "path": "/sessions", "client": ("1.1.1.1", 1),
                             "headers": [(b"authorization", f"Bearer {KEY}".encode())]}, receive, send))
    assert client.budget.used == 0 and "user" not in client.seen


def test_each_users_share_of_the_budget_is_named_for_them_and_follows_their_quota(tmp_path):
    quotas = {"default": 8 * MIB}
    client = Client(quota=lambda user: quotas[user.name])
    budget = client.gate.user_budget(client.gate.local_user)
    assert (budget.total, budget.parent, budget.raised_by) == (8 * MIB, client.budget, "--memory-budget-gb")
    assert budget.name == "this server's memory budget for all sessions (less the cache's share)"
    quotas["default"] = 4 * MIB
    assert client.gate.user_budget(client.gate.local_user) is budget and budget.total == 4 * MIB
    client.request("GET", "/info")
    assert client.seen["budget"] is budget
    key_file = tmp_path / "keys.toml"
    key_file.write_text('[users.ann]\nkey_sha256 = "' + "0" * 64 + '"\n')
    ann = User("ann", b"\0" * 32)
    client = Client(keys=KeyRing([ann], key_file), quota=lambda user: 2 * MIB)
    budget = client.gate.user_budget(ann)
    assert (budget.name, budget.raised_by) == ("the memory budget of your key (ann)",
                                              "memory_gb for your key in the key file")
