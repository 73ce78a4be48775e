"""Start-up of ``medsam3 web`` in the order that works, then serve until interrupted.

1. Options first (a bad option costs nothing).
2. torch before any VTK view: torch's triton and VTK's software renderer each bring an LLVM, and loading torch after
   the first render crashes the process.
3. slicer-core, the views and the page (the views' anti-aliasing is off by default: 8 samples cost about 6x on a
   CPU renderer); the page opens at once, and the model backend (in-process, the stand-in, or a ``medsam3 serve``
   server) loads on the model thread meanwhile, with a progress bar on the page; a model that cannot load stops
   the server with its one-line error.
4. The server never stops on its own (trame stops 5 minutes after the last tab closes unless told not to).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
from typing import Sequence

from medsam3.apps.arguments import UsageError
from medsam3.errors import MedSam3Error


def make_backend(args):
    if args.stand_in_model:  # tests: the bright-region stand-in (no download, no torch model)
        while args.stand_in_load_gate and not args.stand_in_load_gate.exists():  # tests: a load as long as wanted
            time.sleep(0.05)
        from medsam3.interaction.engine import SegmentationEngine
        from medsam3.transports.backend import BackendInfo, LocalBackend
        from MedicalSAM3SlicerLib.self_test_model import SELF_TEST_IMAGE_SIZE, self_test_model

        return LocalBackend(SegmentationEngine(self_test_model()),
                            BackendInfo(model="bright-region stand-in", device="cpu", image_size=SELF_TEST_IMAGE_SIZE))
    from medsam3.transports.backend_choice import open_backend

    return open_backend(args.model, args.device, args.server, args.server_api_key)


def fit_on_first_size(view) -> None:
    """Fit the view to the volume once the browser has given it its real size (the views are created, and the image
    loaded, before any page is open); later resizes keep what the user zoomed to."""

    def resized(*_):
        width, height = view.render_window().GetSize()
        if width > 50 and height > 50:
            view.interactor().RemoveObserver(tag)
            view.reset_view()

    tag = view.interactor().AddObserver("WindowResizeEvent", resized)


WEB_PACKAGES = ("trame", "trame_slicer", "trame_vuetify", "slicer")  # requirements/web.txt and slicer-core


def check_web_packages() -> None:
    """Name a missing package of the page now, before a model loads (trame is imported after it)."""
    import importlib.util

    for package in WEB_PACKAGES:
        try:
            found = importlib.util.find_spec(package) is not None
        except ImportError:
            found = False
        if not found:
            raise ModuleNotFoundError(f"No module named {package!r}", name=package)


def serve(args) -> None:
    started = time.perf_counter()
    check_web_packages()
    for llvm_user in ("torch", "triton"):  # before any VTK view (see the module docstring): triton, which loads
        try:                                # an LLVM, is otherwise imported lazily by torch._dynamo while the model
            importlib.import_module(llvm_user)  # loads on the model thread, after the views rendered
        except ImportError:
            pass
    sys.argv = sys.argv[:1]  # trame parses the process's arguments again; ours are already read
    from trame.app import get_server
    from trame_slicer.core import LayoutManager, SlicerApp
    from trame_slicer.rca_view import register_rca_factories

    from . import access
    from .annotation import Annotation
    from .page import Page, marked_view_ui
    from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui, create_vertical_view_gutter_ui

    server = get_server("medsam3-web", client_type="vue3")
    slicer_app = SlicerApp()
    register_rca_factories(slicer_app.view_manager, server,
                           slice_view_ui_f=marked_view_ui(create_vertical_slice_view_gutter_ui),
                           three_d_view_ui_f=marked_view_ui(create_vertical_view_gutter_ui))
    layout_manager = LayoutManager(slicer_app.scene, slicer_app.view_manager, server)
    layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
    annotation = Annotation(slicer_app, None)
    page = Page(server, slicer_app, layout_manager, annotation)
    for view in slicer_app.view_manager.get_views():
        view.render_window().SetMultiSamples(args.render_samples)
    if args.images:
        annotation.load(args.images)
    annotation.begin_model_load()
    access.install(server, page, args.api_key, args.expose_state)
    for view in slicer_app.view_manager.get_views():
        fit_on_first_size(view)

    failed: list[str] = []

    async def load_model():
        loading = time.perf_counter()
        try:
            backend = await asyncio.get_running_loop().run_in_executor(annotation.model_thread, make_backend, args)
        except Exception as error:  # noqa: BLE001  (one line, and the server stops: nothing was done yet)
            failed.append(str(error) if isinstance(error, MedSam3Error) else f"{type(error).__name__}: {error}")
            asyncio.get_running_loop().stop()  # main() prints the line
            return
        annotation.model_loaded(backend)
        print(f"medsam3 web: model {backend.info().model} loaded in {time.perf_counter() - loading:.1f} s",
              flush=True)

    def ready(**_):
        host = f"[{args.host}]" if ":" in args.host else args.host
        query = "?key=KEY" if args.api_key else ""
        print(f"medsam3 web: ready in {time.perf_counter() - started:.1f} s at http://{host}:{server.port}/{query} "
              "(the model loads meanwhile; Ctrl+C stops)", flush=True)
        task = asyncio.ensure_future(load_model())
        annotation._tasks.add(task)
        task.add_done_callback(annotation._tasks.discard)

    server.controller.on_server_ready.add(ready)
    try:
        server.start(host=args.host, port=args.port, timeout=0, open_browser=False, show_connection_info=False)
    except RuntimeError:  # the loop stopped by load_model: "Event loop stopped before Future completed"
        if not failed:
            raise
    annotation.close()
    if failed:
        raise MedSam3Error(f"the model did not load: {failed[0]}")


def main(argv: Sequence[str] | None = None) -> int:
    from . import options

    try:
        args = options.parse(sys.argv[1:] if argv is None else argv)
        serve(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except MedSam3Error as error:
        print(f"medsam3 web: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except ImportError as error:  # as a command without its extra: what to install, exit 2
        print(f"medsam3 web: {error.name or error} is not installed: install requirements/web.txt "
              "(scripts/setup_env.sh does)", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: one line, the traceback on request
        if os.environ.get("MEDSAM3_DEBUG"):
            raise
        print(f"medsam3 web: internal error: {type(error).__name__}: {error} (set MEDSAM3_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1
    return 0
