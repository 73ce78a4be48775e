"""Options every command shares are defined once: where the model runs (--model / --device, or --server /
--api-key / --ca-file), the one rule that a server excludes a local model, and the server's limits, whose defaults
are the settings dataclass's."""

from __future__ import annotations

import dataclasses
import logging

import pytest

import medsam3.apps.cli
import medsam3.apps.server
from medsam3.apps.arguments import UsageError
from medsam3.apps.cli import main
from medsam3.apps.demo import _parser as demo_parser
from medsam3.errors import MedSam3Error
from medsam3_web import options
from medsam3.apps.server.settings import ServerSettings

from server_harness import oracle_backend_factory, small_volume, write_nifti


@pytest.mark.parametrize("command", [["segment", "image.nii.gz", "--text", "liver", "-o", "out"],
                                     ["evaluate", "data"]])
@pytest.mark.parametrize("local", [["--model", "tiny-random"], ["--device", "cpu"]])
def test_every_command_refuses_a_server_with_a_local_model_in_the_same_line(command, local, capsys, tmp_path,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    never = lambda *args: pytest.fail("no backend may be opened")  # noqa: E731

    status = main([*command, "--server", "https://gpu.example:8443", *local], backend_factory=never)

    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert error == (f"medsam3 {command[0]}: --model and --device choose an in-process run; a server runs the "
                     "model and device its operator chose. Leave them out, or leave out --server.")


@pytest.mark.parametrize("local", [["--model", "tiny-random"], ["--device", "cpu"]])
def test_the_web_page_refuses_a_server_with_a_local_model_in_the_same_line(local):
    with pytest.raises(UsageError) as refused:
        options.parse(["--server", "https://gpu.example:8443", *local])
    assert str(refused.value) == ("medsam3 web: --model and --device choose an in-process run; a server runs the model "
                                  "and device its operator chose. Leave them out, or leave out --server.")


def test_the_demo_and_the_web_page_take_the_shared_backend_options():
    assert options.parse(["--server", "https://gpu.example:8443", "--server-api-key", "k"]).server_api_key == "k"
    with pytest.raises(MedSam3Error, match="--ca-file missing.pem: No such file"):
        options.parse(["--server", "https://gpu.example:8443", "--ca-file", "missing.pem"])
    demo = demo_parser().parse_args(["--model", "tiny-random", "--device", "cpu"])
    assert (demo.model, demo.device) == ("tiny-random", "cpu")


def test_evaluate_trusts_a_ca_file_as_segment_does(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = main(["evaluate", "data", "--server", "https://gpu.example:8443", "--ca-file", "missing.pem"],
                  backend_factory=lambda *args: pytest.fail("no backend may be opened"))
    error = capsys.readouterr().err.strip()
    assert status == 1 and error.startswith("medsam3: --ca-file missing.pem: No such file") and "PEM" in error


def _serve_settings(monkeypatch, *arguments) -> ServerSettings:
    started = {}
    monkeypatch.setattr(medsam3.apps.server, "run_server", lambda backend, settings, **tls: started.update(
        settings=settings))
    assert main(["serve", "--no-api-key", *arguments], backend_factory=lambda *args: None) == 0
    return started["settings"]


def test_serve_without_flags_runs_with_the_settings_defaults(monkeypatch):
    settings = _serve_settings(monkeypatch)
    assert settings.public_limits() == ServerSettings().public_limits()
    assert (settings.host, settings.port) == (ServerSettings().host, ServerSettings().port)


def test_the_serve_flags_take_their_defaults_from_the_settings_dataclass(monkeypatch):
    """One source: change a default in ServerSettings and `medsam3 serve` follows."""
    changed = dataclasses.make_dataclass("ChangedDefaults", [("max_sessions", int, 3), ("idle_timeout_seconds",
                                                                                          float, 120.0)],
                                         bases=(ServerSettings,), frozen=True)
    monkeypatch.setattr(medsam3.apps.cli, "ServerSettings", changed)
    limits = _serve_settings(monkeypatch).public_limits()
    assert (limits["max_sessions"], limits["idle_timeout_seconds"]) == (3, 120.0)


def test_segment_logs_the_seconds_of_each_stage(tmp_path, caplog, capsys):
    image = write_nifti(small_volume(), tmp_path / "small.nii.gz")
    with caplog.at_level(logging.INFO, logger="medsam3.timings"):
        status = main(["segment", str(image), "--point", "8,8,1", "--ijk", "-o", str(tmp_path / "out")],
                      backend_factory=oracle_backend_factory)
    assert status == 0, capsys.readouterr().err
    stages = [record.stage for record in caplog.records if record.name == "medsam3.timings"]
    assert stages[:2] == ["read_image", "load_model"] and len(stages) >= 4
    assert all(record.seconds >= 0 for record in caplog.records if record.name == "medsam3.timings")
    printed = capsys.readouterr().out.splitlines()[-1]  # the user's summary line still names every stage
    assert printed.startswith("seconds: ") and all(stage in printed for stage in stages)
