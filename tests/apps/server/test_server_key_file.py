"""The key file's rules, one at a time (issue 23, mutation testing of server_auth): which key admits whom (the key
exactly, never a prefix), what a key file may say and the one line that names each mistake, each user's share of
sessions and memory, and when an edited file takes effect."""

from __future__ import annotations

import json
import logging
import os

import pytest

from medsam3.apps.server.keys import KeyFileError, KeyRing, key_hash, new_user_line, parse_key_file

from server_harness import FakeClock

ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef"
GIB = 1024**3


def test_only_the_exact_key_admits_its_user():
    ring = KeyRing(parse_key_file(f'[users]\nalice = "{key_hash(ALICE)}"\nbob = "{key_hash(BOB)}"\n', "keys.toml"))
    assert ring.find(ALICE).name == "alice" and ring.find(BOB).name == "bob"
    for other in (ALICE[:1], ALICE[:-1], ALICE + "x", ALICE.upper(), "", "\udcff" + ALICE):
        assert ring.find(other) is None, other
    single = KeyRing.single(ALICE)
    assert single.find(ALICE).name == "default" and single.find(ALICE[:1]) is None and single.find(ALICE[:-1]) is None
    assert key_hash(ALICE) == "sha256:" + "%064x" % int.from_bytes(ring.users[0].digest, "big")


def test_a_key_file_gives_each_user_their_quotas_or_the_defaults(tmp_path):
    text = (f'[defaults]\nmax_sessions = 3\nmemory_gb = 0.5\n[users]\nalice = "{key_hash(ALICE)}"\n'
            f'bob = {{ key = "{key_hash(BOB)}", max_sessions = 7, memory_gb = 2 }}\n')
    alice, bob = parse_key_file(text, "keys.toml")
    assert (alice.name, alice.max_sessions, alice.memory_bytes) == ("alice", 3, GIB // 2)
    assert (bob.name, bob.max_sessions, bob.memory_bytes) == ("bob", 7, 2 * GIB)
    as_json = json.dumps({"users": {"alice": {"key": key_hash(ALICE), "memory_gb": 0.01}}})
    (only,) = parse_key_file("  " + as_json, "keys.json")
    assert (only.max_sessions, only.memory_bytes) == (None, int(0.01 * GIB))
    (top,) = parse_key_file(f'[users]\nalice = {{ key = "{key_hash(ALICE)}", max_sessions = 100000, '
                            f'memory_gb = 1048576 }}\n', "keys.toml")  # the largest accepted
    assert (top.max_sessions, top.memory_bytes) == (100_000, 2**20 * GIB)
    (least,) = parse_key_file(f'[users]\nalice = {{ key = "{key_hash(ALICE)}", max_sessions = 1 }}\n', "k")
    assert least.max_sessions == 1  # the smallest accepted


def test_a_user_without_quotas_gets_an_equal_share_and_never_more_than_the_server_has():
    alice, bob, carol = parse_key_file(f'[users]\nalice = "{key_hash(ALICE)}"\nbob = {{ key = "{key_hash(BOB)}", '
                                       f'max_sessions = 50, memory_gb = 8 }}\ncarol = "{key_hash("c" * 20)}"\n', "k")
    ring = KeyRing([alice, bob, carol])
    assert ring.quota_sessions(alice, 10) == 3 and ring.quota_sessions(alice, 2) == 1  # a share, at least one
    assert ring.quota_sessions(bob, 10) == 10 and ring.quota_sessions(bob, 100) == 50
    assert ring.quota_memory(alice, 9 * GIB) == 3 * GIB and ring.quota_memory(alice, 10 * GIB) == 10 * GIB // 3
    assert ring.quota_memory(bob, 4 * GIB) == 4 * GIB and ring.quota_memory(bob, 16 * GIB) == 8 * GIB
    solo = KeyRing([alice])
    assert solo.quota_sessions(alice, 10) == 10 and solo.quota_memory(alice, 9 * GIB) == 9 * GIB


VALID = key_hash(ALICE)


@pytest.mark.parametrize("text, message", [
    ("[users]\nalice = 'sha256:xyz'\n", "keys.toml: user 'alice' needs a key hash \"sha256:<64 hex digits>\" (make a "
     "key and its line with: python -m medsam3.apps.server.keys alice)."),
    (f"[users]\nalice = '{VALID[:-1]}'\n", "needs a key hash"),
    (f"[users]\nalice = '{VALID}0'\n", "needs a key hash"),
    (f"[users]\nalice = '{VALID.replace('sha256:', 'sha512:')}'\n", "needs a key hash"),
    ("[users]\nalice = 5\n", "needs a key hash"),
    (f"[users]\nalice = '{VALID[:-1]}g'\n", "keys.toml: the key hash of user 'alice' is not hexadecimal."),
    ("users = [", "keys.toml is not valid TOML or JSON ("),
    ("{\"users\": ", "keys.toml is not valid TOML or JSON ("),
    ("[users]\n", "keys.toml needs a [users] table naming at least one user: alice = \"sha256:...\"."),
    ("title = 'no users'\n", "needs a [users] table"),
    ("users = 'alice'\n", "needs a [users] table"),
    ('{"users": ["alice"]}', "needs a [users] table"),
    (f"defaults = 3\n[users]\nalice = '{VALID}'\n", "needs a [users] table"),
    (f"[users]\nalice = {{ key = '{VALID}', sessions = 2 }}\n",
     "keys.toml: user 'alice' has unknown fields ['sessions']; use key, max_sessions, memory_gb."),
    (f"[users]\nalice = '{VALID}'\nbob = '{VALID}'\n",
     "keys.toml: user 'bob' has the same key as another user; give each user their own."),
    (f"[users]\nalice = {{ key = '{VALID}', max_sessions = 0 }}\n",
     "keys.toml: max_sessions of alice must be a whole number from 1 to 100000."),
    (f"[users]\nalice = {{ key = '{VALID}', max_sessions = 100001 }}\n", "max_sessions of alice"),
    (f"[users]\nalice = {{ key = '{VALID}', max_sessions = 2.0 }}\n", "max_sessions of alice"),
    (f"[users]\nalice = {{ key = '{VALID}', max_sessions = true }}\n", "max_sessions of alice"),
    (f"[defaults]\nmax_sessions = 0\n[users]\nalice = '{VALID}'\n", "keys.toml: max_sessions of [defaults]"),
    (f"[users]\nalice = {{ key = '{VALID}', memory_gb = 0.009 }}\n",
     "keys.toml: memory_gb of alice must be a number from 0.01 to 1048576."),
    (f"[users]\nalice = {{ key = '{VALID}', memory_gb = 1048577 }}\n", "memory_gb of alice"),
    (f"[users]\nalice = {{ key = '{VALID}', memory_gb = nan }}\n", "memory_gb of alice"),
    (f"[users]\nalice = {{ key = '{VALID}', memory_gb = true }}\n", "memory_gb of alice"),
    (f"[users]\nalice = {{ key = '{VALID}', memory_gb = '2' }}\n", "memory_gb of alice"),
])
def test_each_key_file_mistake_is_named_in_one_line(text, message):
    with pytest.raises(KeyFileError) as raised:
        parse_key_file(text, "keys.toml")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_an_edited_key_file_takes_effect_within_a_second_and_a_broken_edit_keeps_the_keys(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="medsam3.server")
    clock = FakeClock()
    path = tmp_path / "keys.toml"
    path.write_text(f'[users]\nalice = "{key_hash(ALICE)}"\n')
    ring = KeyRing.from_file(path, clock)
    assert ring.path == path and ring.find(ALICE).name == "alice"
    clock.advance(2)
    assert not ring.reload_if_changed() and "read again" not in caplog.text  # unchanged since it was first read
    path.write_text(f'[users]\nbob = "{key_hash(BOB)}"\n')
    clock.advance(0.9)
    assert not ring.reload_if_changed() and ring.find(BOB) is None  # not checked again yet
    clock.advance(0.1)
    assert ring.find(BOB).name == "bob" and ring.find(ALICE) is None
    assert [r.getMessage() for r in caplog.records] == ["key file read again: 1 user(s)"]
    clock.advance(5)
    assert not ring.reload_if_changed()  # unchanged: not read again
    path.write_text("[users]\nbob = 'not a hash'\n")
    clock.advance(5)
    assert not ring.reload_if_changed() and ring.find(BOB).name == "bob"
    assert caplog.records[-1].getMessage() == (f"the key file changed but cannot be used ({path}: user 'bob' needs a "
                                               "key hash \"sha256:<64 hex digits>\" (make a key and its line with: "
                                               "python -m medsam3.apps.server.keys bob).); the keys read before stay "
                                               "in force")
    path.write_text(f'[users]\ncarol = "{key_hash(ALICE)}"\n')
    os.utime(path, ns=(0, 0))
    assert ring.reload_if_changed(force=True) and ring.find(ALICE).name == "carol"  # at once when forced
    assert not KeyRing.single(ALICE).reload_if_changed(force=True)  # no file, nothing to read


def test_an_unreadable_key_file_is_one_line(tmp_path):
    with pytest.raises(KeyFileError, match=r"^Cannot read the key file .*missing\.toml: No such file or directory\.$"):
        KeyRing.from_file(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b"[users]\nalice = '\xe9'\n")
    with pytest.raises(KeyFileError, match="Cannot read the key file"):
        KeyRing.from_file(tmp_path / "latin1.toml")
    (tmp_path / "empty.toml").write_text("[users]\n")
    with pytest.raises(KeyFileError) as raised:
        KeyRing.from_file(tmp_path / "empty.toml")
    assert str(raised.value).startswith(f"{tmp_path / 'empty.toml'} needs a [users] table")


def test_a_new_key_line_admits_exactly_the_new_key():
    key, line = new_user_line('dave "the admin"')
    assert len(key) >= 43 and key not in line
    (user,) = parse_key_file("[users]\n" + line + "\n", "keys.toml")
    assert user.name == 'dave "the admin"' and KeyRing([user]).find(key) is user
    assert new_user_line("dave")[0] != key
