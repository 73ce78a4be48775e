"""Errors the engine raises for things a user can fix.

Every error carries a message that says what went wrong and what to do about it. Callers (the Slicer module,
the command line, the server) show the message as it is; they never need a traceback to explain the problem.
"""

import importlib.util


class MedSam3Error(Exception):
    """Base class of every error the engine raises on purpose."""


class PromptError(MedSam3Error, ValueError):
    """A prompt cannot be used: outside the volume, empty, or malformed."""


class VolumeError(MedSam3Error, ValueError):
    """A volume cannot be used: wrong dimensionality, singular geometry, unreadable file."""


class ModelNotFoundError(MedSam3Error, FileNotFoundError):
    """The requested model is neither a known name, a local directory, a checkpoint file, nor reachable."""


class ModelAccessError(MedSam3Error, PermissionError):
    """The model exists but cannot be downloaded: gated repository, missing token, or no network."""


class CheckpointError(MedSam3Error, ValueError):
    """A checkpoint file is corrupt, truncated, or not a plain weights checkpoint."""


class Cancelled(MedSam3Error):
    """The user stopped a running prediction; nothing was changed."""

    def __init__(self, message: str = "Stopped before the end: nothing was changed."):
        super().__init__(message)


class RemoteServerError(MedSam3Error):
    """The server cannot be reached, refused the request, or answered with something unexpected."""


class RemoteAuthError(RemoteServerError, PermissionError):
    """The server needs an API key, or refused the one given."""


class VersionMismatchError(RemoteServerError):
    """The client and the server run medsam3 versions that do not work together."""


class MissingExtra(MedSam3Error):
    """A command needs a package of one of medsam3's optional parts (a pip extra) that is not installed."""


# The import names of pyproject.toml's extras (tests/extension/test_pip_install.py holds the two equal).
EXTRAS = {"server": ("fastapi", "starlette", "pydantic", "uvicorn"), "ray": ("ray",),
          "evaluation": ("matplotlib", "monai"), "dicom": ("pydicom", "highdicom"), "finetune": ("peft", "accelerate")}


def require_extra(extra: str, what: str) -> None:
    """Raise :class:`MissingExtra` now, before a model loads or a file is written, when a package of ``extra`` is
    not installed (nothing is imported: the packages are looked up)."""
    for package in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_extra(ModuleNotFoundError(f"No module named {package!r}", name=package), what)


def missing_extra(error: ImportError, what: str = "This command") -> MissingExtra | None:
    """The one line for an import that failed because an extra is not installed; None for any other import."""
    package = (error.name or "").split(".")[0]
    extra = next((extra for extra, packages in EXTRAS.items() if package in packages), None)
    if extra is None:
        return None
    return MissingExtra(f"{what} needs {package}, which is not installed: pip install \"medsam3[{extra}]\" (in a "
                        f"checkout: pip install -r requirements/{extra}.txt)")
