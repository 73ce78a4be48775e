"""The argument conventions every ``medsam3`` command shares: one-line usage errors, no option abbreviations, and
coordinates written ``X,Y,Z`` (a leading minus included). Used by :mod:`.cli` and :mod:`.demo` alike."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from ..errors import MedSam3Error
from ..transports.backend_choice import API_KEY_ENVIRONMENT_VARIABLE

COORDINATE_OPTIONS = ("--point", "--negative-point", "--box")
MODEL_HELP = "Hub id, local model folder, Meta-format .pt checkpoint, or tiny-random (default: the engine's default model)"
DEVICE_HELP = "cpu, cuda, cuda:1, mps (default: the best available)"


class UsageError(Exception):
    """A command line argparse refused."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that reports a bad argument as an exception (printed as one line by :func:`.cli.main`).

    Options are never matched by prefix (``--out`` is not ``--output``), in every command and sub-command."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def add_backend_options(parser: argparse.ArgumentParser, remote: bool = True, device_help: str = DEVICE_HELP,
                        model_help: str = MODEL_HELP, api_key_option: str = "--api-key") -> None:
    """Where the model runs, the same options in every command (segment, batch, evaluate, serve, demo, web):
    ``--model`` and ``--device`` (in this process) and, with ``remote``, ``--server``, the server's API key
    (``api_key_option``: ``medsam3 web``'s own --api-key is its page's) and ``--ca-file`` (on a medsam3 server
    instead); :func:`check_backend_options` refuses the two together."""
    parser.add_argument("--model", help=model_help)
    parser.add_argument("--device", help=device_help)
    if remote:
        parser.add_argument("--server", metavar="URL", help="run inference on a medsam3 server instead of here")
        parser.add_argument(api_key_option, help=f"the server's API key (default: ${API_KEY_ENVIRONMENT_VARIABLE})")
        parser.add_argument("--ca-file", metavar="PEM", help="trust the server's TLS certificate in this PEM file "
                                                             "(e.g. a self-signed one; same as SSL_CERT_FILE=PEM)")


def check_backend_options(args: argparse.Namespace, command: str) -> None:
    """``--server`` excludes ``--model`` and ``--device``: the one rule, the one error."""
    if getattr(args, "server", None) and (args.model or args.device):
        raise UsageError(f"medsam3 {command}: --model and --device choose an in-process run; a server runs the model "
                         "and device its operator chose. Leave them out, or leave out --server.")


def check_readable_file(option: str, path: str | None) -> None:
    if path is None:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise MedSam3Error(f"{option} {path}: {error.strerror or error}; give the path of a PEM file.") from None


def _check_certificates(source: str, path: str) -> None:
    """Refuse a CA file that holds no PEM certificate before any connection (OpenSSL's own words say neither
    which file nor what to do)."""
    import ssl

    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise MedSam3Error(f"{source} {path} holds no certificate in PEM form (-----BEGIN CERTIFICATE-----): give "
                           "the server's certificate file, e.g. the one its operator passed to --ssl-certfile.") \
            from None


def trust_ca_file(path: str | None, server: str | None = None) -> None:
    """``--ca-file``: check it, then let the HTTPS client trust it (httpx reads SSL_CERT_FILE); an https
    ``server`` with SSL_CERT_FILE set checks that file the same way."""
    if path:
        check_readable_file("--ca-file", path)
        _check_certificates("--ca-file", path)
        os.environ["SSL_CERT_FILE"] = str(Path(path).resolve())
    elif server and server.lower().startswith("https") and os.environ.get("SSL_CERT_FILE"):
        check_readable_file("SSL_CERT_FILE=", os.environ["SSL_CERT_FILE"])
        _check_certificates("SSL_CERT_FILE=", os.environ["SSL_CERT_FILE"])


def _numbers(text: str, count: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(abs(v) < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{what} must be {count} comma-separated numbers, got {text!r}")
    return values


def parse_point(text: str) -> tuple[float, float, float]:
    return _numbers(text, 3, "a point (X,Y,Z)")


def _box(text: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    values = _numbers(text, 6, "a box (X0,Y0,Z0,X1,Y1,Z1)")
    return values[:3], values[3:]


def attach_coordinate_values(argv: Sequence[str]) -> list[str]:
    """Let ``--point -12.5,30,4`` through: argparse would take the leading minus for an option."""
    joined: list[str] = []
    arguments = list(argv)
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if argument in COORDINATE_OPTIONS and index + 1 < len(arguments) and arguments[index + 1].startswith("-") \
                and "," in arguments[index + 1]:
            joined.append(f"{argument}={arguments[index + 1]}")
            index += 2
            continue
        joined.append(argument)
        index += 1
    return joined
