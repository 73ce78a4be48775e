"""The gate ahead of routing (issue 18): a request without a valid key, or over the rate limit, is answered from its
headers alone, before any of its body is read; every route takes exactly the key (not a prefix, not the key with
more characters); bodies are counted in the memory budget as they arrive and a body or headers that stop arriving
get 408 and give their memory back; the limiter's memory is bounded; an empty mask box and hostile volume
headers get a 4xx."""

from __future__ import annotations

import base64
import json
import socket
import struct
import time
import zlib
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from fastapi.routing import APIRoute

import medsam3.transports.wire_format as wire_format
from medsam3.apps.server import ServerSettings, create_app
from medsam3.apps.server.rate_limit import RateLimiter
from medsam3.transports.wire_format import VOLUME_MAGIC, encode_volume

from server_harness import API_KEY, FakeClock, oracle_backend, running_server, small_volume

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MIB = 1024**2
WAIT = 30  # seconds a socket waits for an answer before the test calls it "never answered"


def raw_request(url: str, head: str, body: bytes = b"", wait: float = WAIT) -> tuple[int, dict]:
    """Send ``head`` (request line and headers) and ``body`` on a fresh connection; the status and JSON answer.
    The connection stays open with whatever of the declared body was not sent."""
    with open_connection(url, wait) as connection:
        connection.sendall(head.encode("latin-1") + b"\r\n" + body)
        return read_response(connection)


def open_connection(url: str, wait: float = WAIT) -> socket.socket:
    address = urlparse(url)
    connection = socket.create_connection((address.hostname, address.port), timeout=wait)
    return connection


def read_response(connection: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
        b"content-length")))
    while len(rest) < length:
        rest += connection.recv(65536)
    return int(head.split()[1]), json.loads(rest[:length])


def head(method: str, path: str, length: int, key: str | None = API_KEY, extra: str = "") -> str:
    authorization = f"Authorization: Bearer {key}\r\n" if key is not None else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{authorization}{extra}")


def in_use(url: str) -> int:
    return httpx.get(f"{url}/info", headers=AUTH).json()["memory_in_use_bytes"]


# --- H-2: refused from the headers, before the body ---------------------------------------------------------------
@pytest.mark.parametrize("path", ["/sessions/some-session/prompts", "/sessions/some-session/objects/1/mask",
                                  "/sessions"])
def test_a_request_without_a_valid_key_is_refused_before_its_body_arrives(path):
    method = "PUT" if path.endswith("/mask") else "POST"
    with running_server() as url:
        for key, status in ((None, 401), ("wrong-key-0123456789abcdef", 403), (API_KEY[:-1], 403)):
            # 300 MiB declared, none of it sent: the answer comes from the headers alone
            answer = raw_request(url, head(method, path, 300 * MIB, key))
            assert answer[0] == status, answer


def test_the_rate_limit_is_checked_before_the_body_arrives():
    clock = FakeClock()
    with running_server(settings=ServerSettings(api_key=API_KEY, requests_per_minute=2), clock=clock) as url:
        statuses = [raw_request(url, head("POST", "/sessions/x/text", 10, extra=""), b'{"text":"a"}'[:10])[0]
                    for _ in range(2)]
        status, answer = raw_request(url, head("POST", "/sessions/x/text", 300 * MIB))
        assert status == 429 and "per minute" in answer["error"]["message"], (statuses, answer)


def test_json_requests_have_a_small_body_limit_and_their_bodies_count_in_the_budget():
    settings = ServerSettings(api_key=API_KEY, max_json_bytes=64 * 1024, max_upload_bytes=64 * MIB,
                              read_timeout_seconds=2.0)
    with running_server(settings=settings) as url:
        status, answer = raw_request(url, head("POST", "/sessions/x/prompts", 65 * 1024))  # declared: at once
        assert status == 413 and "--max-json-mb" in answer["error"]["message"]
        streamed = httpx.post(f"{url}/sessions/x/prompts", headers=AUTH, content=iter([b" " * 40_000] * 3))
        assert streamed.status_code == 413  # no Content-Length: refused as it grows past the limit
        baseline = in_use(url)
        with open_connection(url) as connection:  # half a body sent, the other half still to come
            connection.sendall(head("POST", "/sessions/x/prompts", 60_000).encode() + b"\r\n" + b" " * 30_000)
            for _ in range(100):
                if in_use(url) > baseline:
                    break
                time.sleep(0.05)
            assert 30_000 <= in_use(url) - baseline <= 4 * 30_000  # counted as it arrives (x the parsing factor)
            status, answer = read_response(connection)  # ... and the rest never comes
            assert status == 408 and "stopped arriving" in answer["error"]["message"]
        assert in_use(url) == baseline  # the stalled body's memory is given back


# --- M-6: an upload is reserved as it arrives, and a stalled one is dropped -------------------------------------------
def test_a_stalled_upload_holds_only_what_arrived_and_is_dropped_with_408():
    settings = ServerSettings(api_key=API_KEY, memory_budget_bytes=64 * MIB, read_timeout_seconds=2.0)
    with running_server(settings=settings) as url:
        baseline = in_use(url)
        with open_connection(url) as connection:  # declares 40 MiB, sends 1 MiB, then stalls
            connection.sendall(head("POST", "/sessions", 40 * MIB).replace("application/json", "application/"
                                                                             "octet-stream").encode()
                               + b"\r\n" + bytes(MIB))
            for _ in range(100):
                if in_use(url) - baseline >= MIB:
                    break
                time.sleep(0.05)
            assert MIB <= in_use(url) - baseline < 2 * MIB  # not the 40 MiB it declared
            other = httpx.post(f"{url}/sessions", content=encode_volume(small_volume()), headers=AUTH)
            assert other.status_code == 201  # the declared 40 MiB did not lock others out
            status, answer = read_response(connection)
            assert status == 408 and "read timeout" in answer["error"]["message"]
        httpx.delete(f"{url}/sessions/{other.json()['session_id']}", headers=AUTH)
        assert in_use(url) == baseline


def test_headers_that_never_finish_get_408_and_the_connection_is_closed():
    with running_server(settings=ServerSettings(api_key=API_KEY, header_timeout_seconds=1.0)) as url:
        with open_connection(url) as connection:
            connection.sendall(b"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            status, answer = read_response(connection)
            assert status == 408 and "header timeout" in answer["error"]["message"]
            assert connection.recv(100) == b""  # closed
        assert httpx.get(f"{url}/health").status_code == 200


# --- L-10: what could never fit is 413, not "retry shortly" -----------------------------------------------------------
def _declared_zeros(shape: tuple[int, int, int]) -> bytes:
    header = json.dumps({"shape": list(shape), "dtype": "uint8", "ijk_to_ras": np.eye(4).tolist()}).encode()
    compressor = zlib.compressobj(1)
    voxels = b"".join(compressor.compress(bytes(shape[1] * shape[2])) for _ in range(shape[0])) + compressor.flush()
    return VOLUME_MAGIC + struct.pack("<I", len(header)) + header + voxels


def test_an_upload_that_could_never_fit_beside_the_cache_is_413_not_429():
    settings = ServerSettings(api_key=API_KEY, memory_budget_bytes=96 * MIB)
    with running_server(settings=settings) as url:
        cache = in_use(url)  # the embedding cache's share, held for the server's lifetime
        assert cache > 0
        # 40 MiB of voxels: 80 MiB while decoding; under the 96 MiB budget, over what the cache leaves
        assert 2 * 40 * MIB + cache > settings.memory_budget_bytes > 2 * 40 * MIB
        answer = httpx.post(f"{url}/sessions", content=_declared_zeros((160, 512, 512)), headers=AUTH, timeout=60)
        assert answer.status_code == 413 and "memory budget" in answer.json()["error"]["message"], answer.text
        assert "Retry-After" not in answer.headers
        # a JSON body costs four times its size while parsed: 30 MiB declared needs 120 MiB, refused at once
        status, refused = raw_request(url, head("POST", "/sessions/x/prompts", 30 * MIB))
        assert status == 413, refused
        assert in_use(url) == cache


# --- exact keys on every route ----------------------------------------------------------------------------------------
def _api_routes(routes, prefix: str = ""):
    """Every APIRoute, also inside included routers (FastAPI keeps those as one entry of app.routes)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        inner = getattr(route, "original_router", None) or route
        if inner is not route or hasattr(route, "routes"):
            context = getattr(route, "include_context", None)
            yield from _api_routes(getattr(inner, "routes", []), prefix + (getattr(context, "prefix", "") or ""))


def _routes() -> list[tuple[str, str]]:
    app = create_app(oracle_backend(), ServerSettings(api_key=API_KEY))
    routes = [(method, path.replace("{session_id}", "some-session").replace("{object_id}", "1"))
              for path, route in _api_routes(app.routes) for method in route.methods]
    assert len(routes) >= 11  # info, schema, sessions, prompts, text, cancel, undo, redo, reset, mask, delete
    return routes


def test_every_route_takes_exactly_the_key_not_a_prefix_nor_more():
    routes = _routes()
    with running_server() as url:
        for method, path in routes:
            expected = {"/health": {200}}.get(path)
            for authorization, status in ((None, 401), ("Bearer", 401), ("Basic " + API_KEY, 401),
                                          ("Bearer wrong-key-0123456789abcdef", 403), (f"Bearer {API_KEY[:1]}", 403),
                                          (f"Bearer {API_KEY[:-1]}", 403), (f"Bearer {API_KEY}x", 403),
                                          (f"Bearer {API_KEY} {API_KEY}", 403), (f"Bearer {API_KEY.upper()}", 403)):
                headers = {"Authorization": authorization} if authorization is not None else {}
                answer = httpx.request(method, f"{url}{path}", headers=headers)
                assert answer.status_code in (expected or {status}), (method, path, authorization, answer.text)
            with_key = httpx.request(method, f"{url}{path}", headers=AUTH, json={})
            assert with_key.status_code not in (401, 403), (method, path, with_key.text)


# --- L-12: the rate limiter's memory ----------------------------------------------------------------------------------
def test_rate_limiter_tracks_a_bounded_number_of_clients_and_still_limits_recent_ones():
    clock = FakeClock()
    limiter = RateLimiter(2, clock, max_clients=100)
    assert limiter.allow("10.0.0.1") == 0 and limiter.allow("10.0.0.1") == 0 and limiter.allow("10.0.0.1") > 0
    for n in range(5000):  # a flood from many addresses, no time passing
        limiter.allow(f"192.0.2.{n}")
    assert len(limiter) <= 100
    assert limiter.allow("192.0.2.4999") == 0  # its second token
    assert limiter.allow("192.0.2.4999") > 0  # a recent client keeps its bucket, and its limit


# --- H-3: an empty mask box -------------------------------------------------------------------------------------------
def test_a_mask_box_with_an_empty_side_is_refused_and_zlib_is_never_told_unlimited(monkeypatch):
    lengths = []
    real = zlib.decompressobj

    class Recording:
        def __init__(self):
            self.inner = real()

        def decompress(self, data, max_length=0):
            lengths.append(max_length)
            return self.inner.decompress(data, max_length)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(wire_format.zlib, "decompressobj", Recording)
    bomb = base64.b64encode(zlib.compress(bytes(64 * MIB), 9)).decode()  # 64 KB of zlib, 64 MiB inflated
    with running_server() as url:
        session_id = httpx.post(f"{url}/sessions", content=encode_volume(small_volume()),
                                headers=AUTH).json()["session_id"]
        for box in ([0, 0, 0, 16, 0, 16], [1, 3, 5, 5, 0, 16], [0, 4, 0, 16, 7, 7]):
            answer = httpx.put(f"{url}/sessions/{session_id}/objects/1/mask", headers=AUTH,
                               json={"box": box, "bits": bomb})
            assert answer.status_code == 422 and "empty" in answer.json()["error"]["message"], answer.text
    with pytest.raises(wire_format.WireFormatError, match="no voxels"):
        wire_format.decode_mask_bits(bomb, (0, 4, 4))
    assert 0 not in lengths


# --- L-2: hostile volume headers --------------------------------------------------------------------------------------
def _upload_with_header(header: bytes) -> bytes:
    return VOLUME_MAGIC + struct.pack("<I", len(header)) + header + zlib.compress(bytes(64))


@pytest.mark.parametrize("header, says", [
    (b"[" * 30000 + b"]" * 30000, "nested too deeply"),
    (b'{"a":' * 10000 + b"1" + b"}" * 10000, "nested too deeply"),
    (b'{"shape": [' + b"9" * 5000 + b', 4, 4], "dtype": "int16"}', "not valid JSON"),
    (b'{"shape": [2, 4, 4], "dtype": "int16", "name": ' + b"7" * 5000 + b"}", "not valid JSON"),
])
def test_hostile_volume_headers_get_a_4xx(header, says):
    with running_server() as url:
        answer = httpx.post(f"{url}/sessions", content=_upload_with_header(header), headers=AUTH)
        assert answer.status_code == 400 and says in answer.json()["error"]["message"], answer.text
