"""A server shared by a team (issue 18 M-7): a key file gives each user their own key (stored hashed); a session
belongs to the key that opened it and does not exist for anyone else; each key has its own session and memory
quota, and making room closes only the caller's own sessions; the file is read again when it changes; the single
MEDSAM3_API_KEY keeps working; a bad key file or a bad TLS pair is one line before the model loads."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest

from medsam3.apps.cli import main
from medsam3.apps.server import ServerSettings, create_app
from medsam3.apps.server.runner import reload_keys_on_hangup
from medsam3.apps.server.keys import key_hash
from medsam3.geometry.volume import Volume
from medsam3.transports.wire_format import encode_mask_bits, encode_volume

from server_harness import API_KEY, FakeClock, oracle_backend, running_server, small_volume

KEYS = {"alice": "alice-key-0123456789abcdef", "bob": "bob-key-0123456789abcdef", "carol": "carol-key-0123456789ab"}
MIB = 1024**2


def key_file(path, users, defaults=None, **quotas) -> str:
    lines = []
    if defaults:
        lines += ["[defaults]"] + [f"{name} = {value}" for name, value in defaults.items()]
    lines.append("[users]")
    for name in users:
        extra = "".join(f", {k} = {v}" for k, v in quotas.get(name, {}).items())
        lines.append(f'{name} = {{ key = "{key_hash(KEYS[name])}"{extra} }}')
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def as_user(name: str) -> dict:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def open_session(url: str, name: str, value: int = 0) -> httpx.Response:
    return httpx.post(f"{url}/sessions", content=encode_volume(small_volume(value)), headers=as_user(name))


def click(url: str, name: str, session_id: str) -> httpx.Response:
    return httpx.post(f"{url}/sessions/{session_id}/prompts", headers=as_user(name), json={
        "object_id": 1, "prompt": {"axis": "axial", "points": [{"ijk": [8, 8, 1]}]}})


def test_a_session_exists_only_for_the_key_that_opened_it(tmp_path):
    settings = ServerSettings(key_file=key_file(tmp_path / "keys.toml", ["alice", "bob"]), max_sessions=8)
    with running_server(settings=settings) as url:
        session_id = open_session(url, "alice").json()["session_id"]
        assert click(url, "alice", session_id).status_code == 200
        unknown = httpx.post(f"{url}/sessions/no-such-id/objects/1/undo", headers=as_user("bob"))
        attempts = [click(url, "bob", session_id),
                    httpx.post(f"{url}/sessions/{session_id}/text", headers=as_user("bob"), json={"text": "a"}),
                    httpx.post(f"{url}/sessions/{session_id}/cancel", headers=as_user("bob")),
                    httpx.put(f"{url}/sessions/{session_id}/objects/1/mask", headers=as_user("bob"), json={
                        "box": [1, 2, 4, 6, 4, 6], "bits": encode_mask_bits(np.ones((1, 2, 2), bool))})]
        attempts += [httpx.post(f"{url}/sessions/{session_id}/objects/1/{edit}", headers=as_user("bob"))
                     for edit in ("undo", "redo", "reset")]
        attempts.append(httpx.delete(f"{url}/sessions/{session_id}", headers=as_user("bob")))
        for answer in attempts:  # 404 exactly as for an id that does not exist: nothing tells bob it is there
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
                "no-such-id", session_id)
        bob_info = httpx.get(f"{url}/info", headers=as_user("bob")).json()
        alice_info = httpx.get(f"{url}/info", headers=as_user("alice")).json()
        assert (bob_info["user"], bob_info["open_sessions"]) == ("bob", 0)
        assert (alice_info["user"], alice_info["open_sessions"]) == ("alice", 1)
        undone = httpx.post(f"{url}/sessions/{session_id}/objects/1/undo", headers=as_user("alice"))
        assert undone.status_code == 200  # bob's attempts changed nothing of alice's
        assert httpx.delete(f"{url}/sessions/{session_id}", headers=as_user("alice")).status_code == 200


def test_making_room_closes_only_the_callers_own_sessions(tmp_path):
    clock = FakeClock()
    path = key_file(tmp_path / "keys.toml", ["alice", "bob"], bob={"max_sessions": 2})
    with running_server(settings=ServerSettings(key_file=path, max_sessions=4), clock=clock) as url:
        alice = [open_session(url, "alice", n).json()["session_id"] for n in range(2)]
        clock.advance(1)
        bob = []
        for n in range(10):  # bob floods: his quota is 2, and he gives up his own idle ones
            answer = open_session(url, "bob", n)
            assert answer.status_code == 201, answer.text
            bob.append(answer.json()["session_id"])
            clock.advance(1)
        for session_id in alice:
            assert click(url, "alice", session_id).status_code == 200  # alice lost nothing
        evicted = click(url, "bob", bob[0])
        assert evicted.status_code == 404 and "your key's limit of 2 sessions" in evicted.json()["error"]["message"]
        assert click(url, "bob", bob[-1]).status_code == 200
        assert httpx.get(f"{url}/info", headers=as_user("alice")).json()["open_sessions"] == 2


def test_a_user_with_no_session_to_give_up_is_told_the_server_is_full(tmp_path):
    path = key_file(tmp_path / "keys.toml", ["alice", "bob"], defaults={"max_sessions": 2})
    with running_server(settings=ServerSettings(key_file=path, max_sessions=2)) as url:
        # default quota from [defaults]: 2 each, but the server holds 2 in all
        kept = [open_session(url, "alice", n).json()["session_id"] for n in range(2)]
        refused = open_session(url, "bob")
        assert refused.status_code == 429 and "other users" in refused.json()["error"]["message"]
        assert all(click(url, "alice", session_id).status_code == 200 for session_id in kept)


def test_each_key_has_its_own_memory_quota(tmp_path):
    path = key_file(tmp_path / "keys.toml", ["alice", "bob"], alice={"memory_gb": 0.02, "max_sessions": 16})  # 20 MiB
    settings = ServerSettings(key_file=path, memory_budget_bytes=256 * MIB, max_sessions=32)
    body = encode_volume(Volume(np.zeros((40, 256, 256), np.int16), np.eye(4)))  # held as uint8: 2.5 MiB
    with running_server(settings=settings) as url:
        first = httpx.post(f"{url}/sessions", content=body, headers=as_user("alice"))
        assert first.status_code == 201, first.text
        answers = [httpx.post(f"{url}/sessions", content=body, headers=as_user("alice")) for _ in range(8)]
        refused = [a for a in answers if a.status_code != 201]
        assert refused and refused[0].status_code == 429 and "your key (alice)" in refused[0].json()["error"]["message"]
        info = httpx.get(f"{url}/info", headers=as_user("alice")).json()
        assert info["your_memory_in_use_bytes"] <= 20 * MIB < info["limits"]["memory_budget_bytes"]
        assert all(httpx.post(f"{url}/sessions", content=body, headers=as_user("bob")).status_code == 201
                   for _ in range(6))  # bob's share is not alice's


def test_the_key_file_is_read_again_when_it_changes(tmp_path):
    clock = FakeClock()
    path = tmp_path / "keys.toml"
    key_file(path, ["alice", "bob"])
    with running_server(settings=ServerSettings(key_file=str(path)), clock=clock) as url:
        assert httpx.get(f"{url}/info", headers=as_user("carol")).status_code == 403
        key_file(path, ["alice", "carol"])  # carol added, bob's key revoked
        clock.advance(2)
        assert httpx.get(f"{url}/info", headers=as_user("carol")).json()["user"] == "carol"
        assert httpx.get(f"{url}/info", headers=as_user("bob")).status_code == 403
        path.write_text("[users]\nalice = 'not a hash'\n")  # a broken edit keeps the keys in force
        clock.advance(2)
        assert httpx.get(f"{url}/info", headers=as_user("carol")).status_code == 200


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="SIGHUP is a POSIX signal")
def test_sighup_reads_the_key_file_again_at_once(tmp_path):
    clock = FakeClock()  # frozen: only the signal can make the server read the file again
    path = tmp_path / "keys.toml"
    key_file(path, ["alice"])
    app = create_app(oracle_backend(), ServerSettings(key_file=str(path)), clock=clock)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert reload_keys_on_hangup(app)
        key_file(path, ["carol"])
        assert app.state.keys.find(KEYS["carol"]) is None  # not yet: checked at most once a second
        os.kill(os.getpid(), signal.SIGHUP)
        assert app.state.keys.find(KEYS["carol"]).name == "carol" and app.state.keys.find(KEYS["alice"]) is None
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_json_key_file_and_the_single_key_both_work(tmp_path, monkeypatch):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"users": {"alice": key_hash(KEYS["alice"])}}))
    with running_server(settings=ServerSettings(key_file=str(path))) as url:
        assert httpx.get(f"{url}/info", headers=as_user("alice")).status_code == 200
        assert httpx.get(f"{url}/info", headers={"Authorization": f"Bearer {KEYS['alice'][:-1]}"}).status_code == 403
    monkeypatch.setenv("MEDSAM3_API_KEY", API_KEY)
    with running_server(settings=ServerSettings.with_key_from_environment()) as url:
        answer = httpx.get(f"{url}/info", headers={"Authorization": f"Bearer {API_KEY}"})
        assert answer.status_code == 200 and answer.json()["user"] == "default"


@pytest.mark.parametrize("content, says", [
    ("[users]\nalice = 'secret-in-clear-0123456789'\n", "sha256:"),
    ("[users]\n", "at least one user"),
    ("users = [", "not valid TOML or JSON"),
    (None, "Cannot read the key file"),
])
def test_a_bad_key_file_is_one_line_before_the_model_loads(tmp_path, capsys, content, says):
    path = tmp_path / "keys.toml"
    if content is not None:
        path.write_text(content)
    loaded = []
    status = main(["serve", "--key-file", str(path)], backend_factory=lambda *a: loaded.append(a))
    error = capsys.readouterr().err.strip()
    assert status != 0 and len(error.splitlines()) == 1 and says in error and not loaded, error
    assert "secret-in-clear" not in error


def test_the_key_maker_prints_a_key_and_the_line_that_admits_it(tmp_path):
    made = subprocess.run([sys.executable, "-m", "medsam3.apps.server.keys", "dave"], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    key = made[0].rsplit(": ", 1)[1]
    line = made[1].split(": ", 1)[1]
    path = tmp_path / "keys.toml"
    path.write_text("[users]\n" + line + "\n")
    with running_server(settings=ServerSettings(key_file=str(path))) as url:
        answer = httpx.get(f"{url}/info", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and answer.json()["user"] == "dave"
    assert key not in path.read_text()


def test_api_key_and_key_file_together_are_refused(tmp_path, capsys):
    path = key_file(tmp_path / "keys.toml", ["alice"])
    assert main(["serve", "--key-file", path, "--api-key", API_KEY], backend_factory=lambda *a: None) != 0
    assert "not both" in capsys.readouterr().err


# --- L-8: TLS mistakes ------------------------------------------------------------------------------------------------
def _openssl_pair(folder, name):
    certificate, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(certificate)], check=True, capture_output=True)
    return certificate, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates")
def test_tls_mistakes_are_one_clear_line_before_the_model_loads(tmp_path, capsys):
    certificate, key = _openssl_pair(tmp_path, "one")
    _, other_key = _openssl_pair(tmp_path, "two")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for pair, says in (((certificate, other_key), "does not belong to the certificate"),
                       ((garbage, key), "cannot be loaded as PEM"),
                       ((certificate, garbage), "cannot be loaded as PEM")):
        loaded = []
        status = main(["serve", "--api-key", API_KEY, "--ssl-certfile", str(pair[0]), "--ssl-keyfile", str(pair[1])],
                      backend_factory=lambda *a: loaded.append(a))
        error = capsys.readouterr().err.strip()
        assert status == 1 and len(error.splitlines()) == 1 and says in error and not loaded, error
