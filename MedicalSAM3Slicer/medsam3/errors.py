"""Errors the engine raises for things a user can fix.

Every error carries a message that says what went wrong and what to do about it. Callers (the Slicer module,
the command line, the server) show the message as it is; they never need a traceback to explain the problem.
"""


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
