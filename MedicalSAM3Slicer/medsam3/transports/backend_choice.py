"""Choosing where inference runs from a setting: a server URL means the remote transport, otherwise in-process.

The command line, the demo and the Slicer module all call :func:`open_backend`, so the two transports are
picked the same way everywhere.
"""

from __future__ import annotations

import os

from .backend import SegmentationBackend
from ..errors import MedSam3Error

API_KEY_ENVIRONMENT_VARIABLE = "MEDSAM3_API_KEY"


def open_backend(model: str | None = None, device: str | None = None, server_url: str | None = None,
                 api_key: str | None = None) -> SegmentationBackend:
    """The remote backend when ``server_url`` is given (key from the argument or ``MEDSAM3_API_KEY``; the server's
    operator chose its model and device, so ``model`` and ``device`` are not used), else the model loaded in this
    process (``model`` None means the default model)."""
    if server_url:
        from .remote_client import RemoteBackend

        return RemoteBackend(server_url, api_key or os.environ.get(API_KEY_ENVIRONMENT_VARIABLE) or None)
    try:
        from .model_loading import load_backend
    except ImportError as error:
        raise MedSam3Error(f"This installation of medsam3 cannot load models here ({error}): in 3D Slicer click "
                           "'Install dependencies...'; elsewhere install medsam3 with its engine requirements. A "
                           "server URL needs none of them.") from error
    options = {"device": device}
    if model:
        options["source"] = model
    return load_backend(**options)
