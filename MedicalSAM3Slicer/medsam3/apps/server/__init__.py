"""The remote inference server: one engine on a GPU machine serving Slicer clients on machines without one.

:func:`create_app` builds the FastAPI application around any :class:`medsam3.transports.backend.SegmentationBackend` (tests
inject the ground-truth oracle); :func:`run_server` serves it with uvicorn.
"""

from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "run_server"]


def __getattr__(name: str):
    """``create_app`` and ``run_server`` load FastAPI and uvicorn (the ``[server]`` extra) only when asked for:
    ``medsam3 --help`` reads the settings' defaults without them."""
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "run_server":
        from .runner import run_server

        return run_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
