"""The ``medsam3`` command line: argument parsing, then calls into the engine, the backends and the server.

Every problem a user can fix ends in one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from .. import __version__
from ..transports.backend import SegmentationBackend
from ..transports.backend_choice import API_KEY_ENVIRONMENT_VARIABLE, open_backend
from ..errors import MedSam3Error, MissingExtra, missing_extra, require_extra
from .arguments import (DEVICE_HELP, OneLineArgumentParser, UsageError, _box, add_backend_options,
                        attach_coordinate_values, check_backend_options, parse_point)
from .arguments import check_readable_file as _check_readable_file, trust_ca_file as _trust_ca_file
from .server.settings import ServerSettings
from .evaluation.command import add_evaluate_parser, run_evaluate

BackendFactory = Callable[..., SegmentationBackend]  # (model, device, server_url, api_key) -> backend

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_DELEGATED_COMMANDS = ("bench", "demo", "web")
WEB_PACKAGE = "medsam3_web"  # beside this package in the module folder; run as its own program, never imported


def _positive_number(text: str) -> float:
    """A finite number above zero (``nan`` and ``inf`` are refused: they would switch a limit off)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def _positive_integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


# --- the parser --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="medsam3", description="Segment CT and MRI volumes with Medical SAM3.")
    parser.add_argument("--version", action="version", version=f"medsam3 {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)
    commands.required = True

    segment = commands.add_parser("segment", help="segment an image file or DICOM folder",
                                  description="Segment IMAGE from typed text, clicks and a box; write a labelmap "
                                              "with the image's exact geometry.")
    segment.add_argument("image", metavar="IMAGE", help="NIfTI, NRRD or MHA file, or a DICOM folder")
    segment.add_argument("--text", default="", help='what to segment, e.g. "liver, spleen"')
    segment.add_argument("--point", type=parse_point, action="append", default=[], metavar="X,Y,Z",
                         help="a click inside the object (repeatable)")
    segment.add_argument("--negative-point", type=parse_point, action="append", default=[], metavar="X,Y,Z",
                         help="a click outside the object (repeatable)")
    segment.add_argument("--box", type=_box, metavar="X0,Y0,Z0,X1,Y1,Z1", help="two opposite corners of a box")
    segment.add_argument("--ijk", action="store_true", help="points and box are voxel indices (i,j,k), not RAS mm")
    segment.add_argument("--view", default="axial", choices=("axial", "coronal", "sagittal"),
                         help="the view points and box are placed in (default axial)")
    segment.add_argument("--slice-only", action="store_true", help="segment only the prompted slice")
    segment.add_argument("--name", default="", help="segment name for clicks / a box without --text; with "
                         "--start-from, the segment they refine")
    segment.add_argument("--start-from", default="", metavar="FILE.seg.nrrd",
                         help="start from this Slicer segmentation (same grid as the image): clicks / a box refine "
                              "the segment --name names, every other segment is written back unchanged")
    segment.add_argument("-o", "--output", required=True, metavar="PATH",
                         help="a folder that receives labelmap.nii.gz (+ labelmap.labels.csv: names, colours, "
                              "SNOMED CT codes), segmentation.seg.nrrd, overlay.png and, for DICOM input, "
                              "segmentation.dcm (DICOM SEG); or the labelmap file when PATH ends in .nii.gz, .nii, "
                              ".nrrd or .mha (its .labels.csv beside it, the other files only when asked)")
    segment.add_argument("--overwrite", action="store_true",
                         help="replace existing output files (never the input image)")
    segment.add_argument("--seg-nrrd", nargs="?", const="", metavar="PATH",
                         help="write the Slicer .seg.nrrd (names, colours, codes) here (default: beside the "
                              "labelmap; always written with -o FOLDER)")
    segment.add_argument("--overlay", nargs="?", const="", metavar="PNG",
                         help="write the picture of three slices with the masks outlined here (default: beside "
                              "the labelmap; always written with -o FOLDER)")
    add_backend_options(segment)

    models = commands.add_parser("models", help="list, download, convert and verify models")
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=OneLineArgumentParser)
    model_commands.required = True
    model_commands.add_parser("list", help="the models medsam3 knows")
    download = model_commands.add_parser("download", help="download a model into the cache")
    download.add_argument("source", help="a Hub id or a catalogue name")
    download.add_argument("--cache-dir", help="where models are kept (default: the Hugging Face cache)")
    convert = model_commands.add_parser("convert", help="convert a Meta-format .pt checkpoint")
    convert.add_argument("checkpoint", help="the .pt file")
    convert.add_argument("--output", help="the folder to write (default beside the checkpoint)")
    convert.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    convert.add_argument("--tokenizer", metavar="FOLDER",
                         help="a folder with the CLIP tokenizer files (vocab.json, merges.txt), for converting "
                              "offline (default: the Hugging Face cache, downloaded once)")
    verify = model_commands.add_parser("verify", help="load a model and check it runs")
    verify.add_argument("source", help="a Hub id, local folder, .pt file or tiny-random")
    verify.add_argument("--device", help=DEVICE_HELP)

    commands.add_parser("bench", help="the engine's benchmark (medsam3 bench --help)")

    serve = commands.add_parser("serve", help="run the remote inference server",
                                description="Serve the model to Slicer clients over HTTP(S).")
    defaults = ServerSettings()  # the one source of the server's defaults
    serve.add_argument("--host", default=defaults.host, help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=defaults.port)
    serve.add_argument("--api-key", help=f"the key clients must send (default: ${API_KEY_ENVIRONMENT_VARIABLE})")
    serve.add_argument("--key-file", metavar="FILE", help="a key per user: TOML or JSON naming users and the SHA-256 "
                       "of their keys, with optional quotas; read again when it changes (docs/cli-and-server.md)")
    serve.add_argument("--no-api-key", action="store_true", help="no key (allowed only on a loopback address)")
    serve.add_argument("--max-upload-mb", type=_positive_number, default=defaults.max_upload_bytes / 1024**2,
                       help="largest upload (default %(default)g)")
    serve.add_argument("--max-json-mb", type=_positive_number, default=defaults.max_json_bytes / 1024**2,
                       help="largest body of any other request, e.g. a mask (default %(default)g)")
    serve.add_argument("--read-timeout", type=_positive_number, default=defaults.read_timeout_seconds,
                       metavar="SECONDS", help="408 when request headers, or a body, stop arriving this long "
                       "(default %(default)g)")
    serve.add_argument("--max-voxels", type=_positive_integer, default=defaults.max_voxels,
                       help="largest volume in voxels (default %(default)d)")
    serve.add_argument("--max-sessions", type=_positive_integer, default=defaults.max_sessions,
                       help="open sessions; the longest idle is closed first (default %(default)d)")
    serve.add_argument("--idle-timeout", type=_positive_number, default=defaults.idle_timeout_seconds / 60,
                       metavar="MINUTES", help="close a session unused this long (default %(default)g)")
    serve.add_argument("--rate", type=_positive_integer, default=defaults.requests_per_minute, metavar="PER_MINUTE",
                       help="requests per minute per client (default %(default)d)")
    serve.add_argument("--memory-budget-gb", type=_positive_number, default=defaults.memory_budget_bytes / 1024**3,
                       metavar="GB",
                       help="memory for all sessions together: volumes, masks, cached encodings and work in flight "
                            "(default %(default)g); what would exceed it is refused with 413, or 429 and Retry-After")
    serve.add_argument("--max-phrases", type=_positive_integer, default=defaults.max_phrases,
                       help="typed phrases per request (default %(default)d)")
    serve.add_argument("--max-slice-phrases", type=_positive_integer, default=defaults.max_slice_phrases,
                       help="slices x phrases one request may run through the model (default %(default)d)")
    serve.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                       help="a reverse proxy whose X-Forwarded-For header is believed (repeatable; default none)")
    serve.add_argument("--ssl-certfile", help="TLS certificate (PEM) to serve HTTPS")
    serve.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    add_backend_options(serve, remote=False)

    commands.add_parser("demo", help="the main-job demo on a CT (medsam3 demo --help; scripts/demo.sh)")
    commands.add_parser("web", help="the annotation page in a browser (medsam3 web --help; docs/web.md)")
    add_evaluate_parser(commands)
    importlib.import_module("medsam3.apps.batch.command").add_batch_parser(commands)
    importlib.import_module("medsam3.apps.finetune.command").add_finetune_parser(commands)
    return parser


# --- the commands ------------------------------------------------------------------------------------------------
def _output_paths(args: argparse.Namespace):
    from .segment_pipeline import OutputPaths

    return OutputPaths.for_output(args.output, args.seg_nrrd, args.overlay, dicom=Path(args.image).is_dir())


def _segment(args: argparse.Namespace, backend_factory: BackendFactory) -> int:
    from .segment_pipeline import SegmentRequest, StartingSegments, StepTimer, segment_volume, write_outputs
    from ..files.volume_io import dicom_series_files, read_volume

    request = SegmentRequest(text=args.text, positive_points=tuple(args.point),
                             negative_points=tuple(args.negative_point), box=args.box, coordinates_ijk=args.ijk,
                             view=args.view, whole_volume=not args.slice_only, segment_name=args.name,
                             start_from=args.start_from)
    request.check()
    check_backend_options(args, "segment")
    if not args.server:
        from ..model.capabilities import kinds_for_request, require_from_catalogue

        require_from_catalogue(args.model, kinds_for_request(bool(request.text.strip()), request.has_spatial_prompt,
                                                             request.whole_volume))
    inputs = [args.image] + ([args.start_from] if args.start_from else [])
    paths = _output_paths(args).check(inputs=inputs, overwrite=args.overwrite)  # before any work
    _trust_ca_file(args.ca_file, args.server)
    timer = StepTimer()
    with timer.step("read_image"):
        volume = read_volume(args.image)
    start = None
    if args.start_from:  # read and matched to the image before the model loads
        start = StartingSegments.read(args.start_from, volume)
        if request.has_spatial_prompt:
            start.target(request.segment_name)
    with timer.step("load_model"):
        backend = backend_factory(args.model, args.device, args.server, args.api_key)
    outcome = segment_volume(backend, volume, request, timer, start)
    sources = dicom_series_files(args.image) if paths.dicom_seg is not None else ()
    written = write_outputs(outcome, volume, paths, overlay_title=f"medsam3 {Path(args.image).name}", timer=timer,
                            inputs=inputs, overwrite=args.overwrite, source_files=sources)
    for name, value in zip(outcome.segment_names, range(1, len(outcome.segment_names) + 1)):
        print(f"{name}: {int((outcome.labels == value).sum()):,} voxels, score {outcome.scores[name]:.2f}")
    for note in outcome.notes:
        print(f"note: {note}")
    print("wrote " + ", ".join(str(p) for p in written))
    print("seconds: " + ", ".join(f"{step} {seconds:.2f}" for step, seconds in timer.seconds.items()))
    return 0


def _engine_module(name: str):
    """An engine module the command needs, or a clear error when this installation lacks it."""
    try:
        return importlib.import_module(f"medsam3.{name}")
    except ImportError as error:
        raise MedSam3Error(f"This installation of medsam3 has no {name} ({error}); reinstall it with "
                           "scripts/setup_env.sh.") from error


def _models(args: argparse.Namespace) -> int:
    model_sources = _engine_module("model.model_sources")

    if args.models_command == "list":
        for entry in model_sources.list_models():
            print(f"{entry.source}\t{entry.family}\t{entry.description}")
    elif args.models_command == "download":
        print(model_sources.download_model(args.source, cache_dir=args.cache_dir, progress=True))
    elif args.models_command == "convert":
        print(model_sources.convert_checkpoint(args.checkpoint, out_dir=args.output, dtype=args.dtype,
                                               tokenizer_dir=args.tokenizer))
    else:
        print(_engine_module("transports.model_loading").verify_model(args.source, device=args.device))
    return 0


def _bench(arguments: list[str]) -> int:
    return int(_engine_module("apps.bench.benchmark").main(arguments) or 0)


def _serve(args: argparse.Namespace, backend_factory: BackendFactory) -> int:
    require_extra("server", "medsam3 serve")  # uvicorn is imported only once the model has loaded
    from .server import run_server

    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise UsageError("medsam3 serve: give both --ssl-certfile and --ssl-keyfile, or neither")
    for option, path in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile)):
        _check_readable_file(option, path)
    if args.ssl_certfile:
        from .server.runner import check_tls_files

        check_tls_files(args.ssl_certfile, args.ssl_keyfile)  # one line now, not OpenSSL's after the model loads
    settings = ServerSettings.with_key_from_environment(
        host=args.host, port=args.port, api_key=args.api_key, key_file=args.key_file,
        require_api_key=not args.no_api_key, max_json_bytes=int(args.max_json_mb * 1024 * 1024),
        read_timeout_seconds=args.read_timeout, header_timeout_seconds=args.read_timeout,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_voxels=args.max_voxels,
        max_sessions=args.max_sessions, idle_timeout_seconds=args.idle_timeout * 60,
        requests_per_minute=args.rate, memory_budget_bytes=int(args.memory_budget_gb * 1024**3),
        max_phrases=args.max_phrases, max_slice_phrases=args.max_slice_phrases,
        trusted_proxies=tuple(args.trusted_proxy)).check()  # refuse bad settings before loading a model
    if settings.key_file:
        from .server.keys import KeyRing

        KeyRing.from_file(settings.key_file)  # an unreadable or malformed key file: one line, before the model
    backend = backend_factory(args.model, args.device, None, None)
    run_server(backend, settings, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    return 0


def _demo(arguments: list[str], backend_factory: BackendFactory) -> int:
    from .demo import main as demo_main

    return demo_main(arguments, backend_factory)


def _web(arguments: list[str]) -> int:
    """``medsam3 web``: the browser application lives beside the engine (MedicalSAM3Slicer/medsam3_web) because it
    uses slicer-core, VTK and the Slicer module's bridge, which the engine never imports: it is started as its own
    program (this process is replaced by it), with the module folder on its path."""
    folder = Path(__file__).resolve().parents[2]
    if not (folder / WEB_PACKAGE / "__init__.py").is_file() or not (folder / "MedicalSAM3SlicerLib").is_dir():
        raise MedSam3Error(f"medsam3 web needs the MedicalSAM3Slicer module folder beside the engine ({folder} has "
                           "no medsam3_web): run it from a clone of the repository.")
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), environment.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", WEB_PACKAGE, *arguments]
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, command, environment)
    import subprocess

    return subprocess.call(command, env=environment)


def run(argv: Sequence[str], backend_factory: BackendFactory = open_backend) -> int:
    """Parse ``argv`` and run the command; raises on errors (see :func:`main`)."""
    argv = list(argv)
    if argv and argv[0] in _DELEGATED_COMMANDS:  # their own parsers read every argument after the command
        if argv[0] == "web":
            return _web(argv[1:])
        return _bench(argv[1:]) if argv[0] == "bench" else _demo(argv[1:], backend_factory)
    args = build_parser().parse_args(attach_coordinate_values(argv))
    if args.command == "segment":
        return _segment(args, backend_factory)
    if args.command == "models":
        return _models(args)
    if args.command == "evaluate":
        return run_evaluate(args, backend_factory)
    if args.command == "batch":
        return importlib.import_module("medsam3.apps.batch.command").run_batch(args, backend_factory)
    if args.command == "finetune":
        return importlib.import_module("medsam3.apps.finetune.command").run_finetune(args)
    return _serve(args, backend_factory)


_OS_ERROR_HINTS = {  # what to do about the file-system errors a user can fix
    errno.EEXIST: " (a file is in the way of a folder: give another output path)",
    errno.ENOTDIR: " (a file is in the way of a folder: give another output path)",
    errno.EISDIR: " (a folder is where a file should be: move it away or give another path)",
    errno.EACCES: " (no permission: give a path you may write to, or change its permissions)",
    errno.EPERM: " (no permission: give a path you may write to, or change its permissions)",
    errno.EROFS: " (a read-only file system: give a path on a writable disk)",
    errno.ENOSPC: " (the disk is full: free some space or give a path on another disk)",
    errno.ENOENT: " (no such file or folder: check the path)",
}


def _log_to_stderr(level: str) -> None:
    """``MEDSAM3_LOG=info`` (or debug): the engine's log records, per-stage timings among them, on stderr."""
    if level.strip():
        import logging

        if level.strip().upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            print(f"medsam3: MEDSAM3_LOG={level} is not debug, info, warning or error: ignored", file=sys.stderr)
            return
        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("medsam3").setLevel(level.strip().upper())


def main(argv: Sequence[str] | None = None, backend_factory: BackendFactory = open_backend) -> int:
    """The console script: run a command, turning every error into one line on stderr and an exit status.

    ``backend_factory(model, device, server_url, api_key)`` makes the backend (tests inject one)."""
    if argv is None:  # run as a program: the library's per-frame notices would drown the output
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        _log_to_stderr(os.environ.get("MEDSAM3_LOG", ""))
    try:
        return run(sys.argv[1:] if argv is None else argv, backend_factory)
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except MissingExtra as error:  # an optional part (a pip extra) not installed: a usage problem, said up front
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except MedSam3Error as error:
        print(f"medsam3: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        print(f"medsam3: {error.strerror or error}{': ' + str(error.filename) if error.filename else ''}"
              f"{_OS_ERROR_HINTS.get(error.errno, '')}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("medsam3: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ImportError as error:  # an optional part (a pip extra) not installed: what to install, in one line
        command = " ".join(["medsam3", *_command_words(sys.argv[1:] if argv is None else argv)])
        missing = missing_extra(error, command)
        if missing is None:
            return _internal_error(error)
        print(missing, file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a bug, not a user error: still one line, the traceback on request
        return _internal_error(error)


def _command_words(argv: Sequence[str]) -> list[str]:
    """The command named in ``argv`` (and batch's --ray, the option that needs an extra)."""
    words = [a for a in argv if not a.startswith("-")][:1]
    return words + ["--ray"] if words == ["batch"] and any(a.split("=")[0] == "--ray" for a in argv) else words


def _internal_error(error: Exception) -> int:
    if os.environ.get("MEDSAM3_DEBUG"):
        raise error
    print(f"medsam3: internal error: {type(error).__name__}: {error} (set MEDSAM3_DEBUG=1 for the traceback)",
          file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
