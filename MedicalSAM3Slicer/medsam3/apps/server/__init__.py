"""The remote inference server: one engine on a GPU machine serving Slicer clients on machines without one.

:func:`create_app` builds the FastAPI application around any :class:`medsam3.transports.backend.SegmentationBackend` (tests
inject the ground-truth oracle); :func:`run_server` serves it with uvicorn.
"""

from .app import create_app
from .runner import run_server
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "run_server"]
