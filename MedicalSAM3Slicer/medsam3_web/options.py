"""The command line of ``medsam3 web`` (imports no Slicer, VTK or trame: a bad option costs nothing)."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Sequence

from medsam3.apps.arguments import (OneLineArgumentParser, UsageError, add_backend_options,
                                   check_backend_options, trust_ca_file)
from medsam3.apps.server.settings import is_loopback
from medsam3.transports.backend_choice import API_KEY_ENVIRONMENT_VARIABLE

PAGE_KEY_ENVIRONMENT_VARIABLE = "MEDSAM3_WEB_API_KEY"
DEFAULT_PORT = 8080


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="medsam3 web",
        description="The annotation page in a browser: typed targets, + / - points, segment list, undo, export. "
                    "One process serves one user's scene (docs/web.md).")
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGE",
                        help="NIfTI / NRRD files or DICOM folders on this machine to open (the first is shown)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; any other needs --api-key)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--api-key", help="the key the page asks for (as ?key=KEY in the address); default "
                                          f"${PAGE_KEY_ENVIRONMENT_VARIABLE}; required off loopback")
    add_backend_options(parser, api_key_option="--server-api-key")
    parser.add_argument("--render-samples", type=int, default=0, metavar="N",
                        help="anti-aliasing samples of the views (default 0: a CPU renderer is ~6x slower at 8)")
    parser.add_argument("--expose-state", action="store_true", help=argparse.SUPPRESS)  # tests: GET /medsam3/state
    parser.add_argument("--stand-in-model", action="store_true", help=argparse.SUPPRESS)  # tests: bright region
    parser.add_argument("--stand-in-load-gate", type=Path, help=argparse.SUPPRESS)  # tests: loads once this exists
    return parser


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check ``argv``; raises :class:`UsageError` with one line on a problem the user can fix."""
    args = build_parser().parse_args(argv)
    args.api_key = args.api_key or os.environ.get(PAGE_KEY_ENVIRONMENT_VARIABLE) or None
    if not is_loopback(args.host) and not args.api_key:
        raise UsageError(f"medsam3 web: listening on {args.host} (not loopback) needs a key: give --api-key KEY or "
                         f"set {PAGE_KEY_ENVIRONMENT_VARIABLE}; users then open http://HOST:PORT/?key=KEY")
    if args.expose_state and not is_loopback(args.host):
        raise UsageError("medsam3 web: the test state endpoint is allowed only on loopback")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"medsam3 web: --port must be 0..65535, got {args.port}")
    if args.render_samples < 0:
        raise UsageError("medsam3 web: --render-samples must be 0 or more")
    for image in args.images:
        if not image.exists():
            raise UsageError(f"medsam3 web: {image} does not exist: give a NIfTI / NRRD file or a DICOM folder")
    check_backend_options(args, "web")
    if args.stand_in_load_gate and not args.stand_in_model:
        raise UsageError("medsam3 web: --stand-in-load-gate goes with --stand-in-model")
    if args.server and args.stand_in_model:
        raise UsageError("medsam3 web: --server runs the server's model; leave out --stand-in-model")
    trust_ca_file(args.ca_file, args.server)
    args.server_api_key = args.server_api_key or os.environ.get(API_KEY_ENVIRONMENT_VARIABLE) or None
    return args


def same_key(given: str | None, expected: str) -> bool:
    """Constant-time comparison (the key is never logged)."""
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())
