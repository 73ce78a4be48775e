"""`medsam3 web` without a browser: who may open the page, and bad command lines.

Starting the server also guards the package set requirements/web.txt forces (trame-slicer and slicer-layer-dm built
for slicer-core 5.11, installed with --no-deps on the project's slicer-core and VTK): it builds the slice views, the
3D view, the segment editor and the page on them, and runs with no browser installed.
"""

from __future__ import annotations

import subprocess

import pytest

from web_harness import running_web, web_command, web_environment, write_phantom

pytest.importorskip("trame_slicer", reason="web test skipped: trame-slicer is not installed (requirements/web.txt; "
                                           "scripts/setup_env.sh installs it)")

KEY = "web-test-key-0123456789"


def run_web(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(web_command(*arguments), capture_output=True, text=True, env=web_environment(), timeout=120)


def test_listening_beyond_loopback_without_a_key_is_refused_in_one_line():
    result = run_web("--host", "0.0.0.0")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--api-key" in result.stderr and "MEDSAM3_WEB_API_KEY" in result.stderr


def test_a_missing_image_is_named_in_one_line(tmp_path):
    result = run_web(str(tmp_path / "nowhere.nii.gz"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nowhere.nii.gz does not exist" in result.stderr


def test_the_page_and_everything_behind_it_need_the_key(tmp_path):
    phantom = write_phantom(tmp_path)
    with running_web(tmp_path, str(phantom.path), "--stand-in-model", key=KEY) as web:
        for path in ("", "?key=wrong", "ws", "medsam3/state", "medsam3/download/anything", "index.html"):
            status, body, _ = web.get(path)
            assert status == 401, path
            assert b"?key=KEY" in body and body.count(b"\n") == 1 and KEY.encode() not in body

        status, body, headers = web.get(f"?key={KEY}")
        assert status == 200 and b"<html" in body.lower()
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie

        with_cookie = {"Cookie": cookie.split(";")[0]}
        assert web.get("", with_cookie)[0] == 200  # later requests (and the websocket) carry the cookie
        assert web.get("ws", with_cookie)[0] not in (401, 404)  # the websocket route: reached (not an upgrade here)
        assert web.get("medsam3/state", with_cookie)[0] == 404  # the test endpoint is off unless asked for
        assert KEY not in web.log.read_text(errors="replace")  # never logged


def test_without_the_web_package_beside_the_engine_medsam3_web_says_so_in_one_line(monkeypatch, capsys):
    from medsam3.apps import cli

    monkeypatch.setattr(cli, "WEB_PACKAGE", "no_such_web_package")  # as in a pip-installed engine without the module
    assert cli.main(["web"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "run it from a clone of the repository" in error


def test_a_model_that_cannot_load_stops_the_server_with_one_line(tmp_path):
    """The page opens while the model loads; a model that cannot load ends the process with its one-line error
    (nothing was done yet), as before the load moved behind the page."""
    phantom = write_phantom(tmp_path)
    result = run_web(str(phantom.path), "--model", str(tmp_path / "no-such-model"), "--port", "0")
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("medsam3 web:")]
    assert lines and "the model did not load" in lines[-1] and "no-such-model" in lines[-1], lines
    assert "Traceback" not in result.stderr
