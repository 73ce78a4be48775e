"""The remote transport: the same backend and session interface as :class:`medsam3.transports.backend.LocalBackend`, with
inference on a medsam3 server.

The volume is uploaded once per session; prompts are small JSON messages; the server answers with only the
changed box of a mask, from which :class:`MaskUpdate`s are rebuilt. Connection problems, a wrong key and a
client/server version mismatch become :class:`MedSam3Error`s with a message for the user.
"""

from __future__ import annotations

import threading

import httpx
import numpy as np

from .. import __version__
from .backend import BackendInfo
from ..errors import (Cancelled, MedSam3Error, PromptError, RemoteAuthError, RemoteServerError, VersionMismatchError,
                     VolumeError)
from ..model.preprocessing import Preprocessing
from ..interaction.prompts import SlicePrompt
from ..interaction.session import MaskUpdate
from ..model.capabilities import CapabilityError
from ..geometry.slicing import SliceAxis
from .version_compatibility import CLIENT_VERSION_HEADER, is_compatible, mismatch_message
from ..geometry.volume import Volume
from .wire_format import (VOLUME_MEDIA_TYPE, encode_mask_bits, encode_volume, mask_update_from_message,
                          region_of_mask, prompt_to_message)

DEFAULT_TIMEOUT_SECONDS = 600.0  # whole-volume propagation on a busy server can take minutes
STOP_POLL_SECONDS = 0.1

# The server's error kinds that mean the same as an engine error raised in-process.
_ENGINE_ERRORS = {"PromptError": PromptError, "VolumeError": VolumeError, "Cancelled": Cancelled,
                  "CapabilityError": CapabilityError}


def _untrusted_certificate(error: Exception) -> bool:
    return "CERTIFICATE_VERIFY_FAILED" in str(error) or "certificate verify failed" in str(error)


class _Connection:
    """HTTP calls to one server, turning every failure into a :class:`RemoteServerError` with a clear message."""

    def __init__(self, url: str, api_key: str | None, timeout: float):
        self.url = url.rstrip("/")
        headers = {CLIENT_VERSION_HEADER: __version__}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        try:
            self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        except (httpx.InvalidURL, ValueError) as error:
            raise RemoteServerError(f"{url!r} is not a server address: give one such as http://gpu-host:8000.") \
                from error

    def request(self, method: str, path: str, **options) -> dict:
        try:
            response = self.http.request(method, path, **options)
        except httpx.TimeoutException as error:
            raise RemoteServerError(f"The server at {self.url} did not answer in time ({type(error).__name__}); "
                                    "it may be overloaded or the network is slow.") from error
        except httpx.ConnectError as error:
            if _untrusted_certificate(error):
                raise RemoteServerError(
                    f"The server at {self.url} has a TLS certificate this computer does not trust (self-signed or "
                    "from a private authority). Get the certificate's PEM file from the server's operator and pass "
                    "--ca-file CERT.pem, or set SSL_CERT_FILE=CERT.pem (Slicer: before starting it).") from error
            raise RemoteServerError(f"Cannot reach the medsam3 server at {self.url} ({error}): check the address, "
                                    "that the server is running, and the network or VPN.") from error
        except (httpx.TransportError, httpx.InvalidURL) as error:
            raise RemoteServerError(f"Cannot reach the medsam3 server at {self.url} ({error}): check the address, "
                                    "that the server is running, and the network or VPN.") from error
        if response.is_success:
            try:
                return response.json()
            except ValueError as error:
                raise RemoteServerError(f"{self.url} answered with something that is not a medsam3 server's "
                                        "JSON: check the address.") from error
        raise self._error(response)

    def _error(self, response: httpx.Response) -> MedSam3Error:
        try:
            error = response.json()["error"]
            kind, message = str(error["kind"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            kind, message = "", f"The server at {self.url} answered HTTP {response.status_code} " \
                                f"({response.reason_phrase}); is this a medsam3 server?"
        if response.status_code in (401, 403):
            return RemoteAuthError(message)
        if response.status_code == 426:
            return VersionMismatchError(message)
        return _ENGINE_ERRORS.get(kind, RemoteServerError)(message)

    def stoppable_request(self, method: str, path: str, should_stop, cancel_path: str, **options) -> dict:
        """:meth:`request`, asking the server to cancel (``cancel_path``) as soon as ``should_stop()`` turns True;
        the server then answers 409 and this raises :class:`Cancelled`."""
        if should_stop is None:
            return self.request(method, path, **options)
        outcome: dict = {}

        def call() -> None:
            try:
                outcome["answer"] = self.request(method, path, **options)
            except BaseException as error:  # handed to the caller's thread below
                outcome["error"] = error

        worker = threading.Thread(target=call, name="medsam3-remote-request", daemon=True)
        worker.start()
        asked = False
        while worker.is_alive():
            worker.join(STOP_POLL_SECONDS)
            if worker.is_alive() and not asked and should_stop():
                asked = True
                try:
                    self.request("POST", cancel_path)
                except RemoteServerError:
                    pass  # the request ends by itself
        if "error" in outcome:
            raise outcome["error"]
        return outcome["answer"]

    def close(self) -> None:
        self.http.close()


class RemoteSession:
    """A session on the server (implements :class:`medsam3.transports.backend.Session`)."""

    def __init__(self, connection: _Connection, session_id: str, volume_shape: tuple[int, int, int]):
        self._connection = connection
        self.session_id = session_id
        self.volume_shape = volume_shape
        self._masks: dict[int, np.ndarray] = {}  # each object's mask, rebuilt from the server's updates
        self._closed = False

    def _path(self, suffix: str = "") -> str:
        return f"/sessions/{self.session_id}{suffix}"

    def _update(self, message: dict) -> MaskUpdate:
        update = mask_update_from_message(message)
        mask = self._masks.setdefault(update.object_id, np.zeros(self.volume_shape, dtype=bool))
        update.apply_to(mask)
        return update

    def mask(self, object_id: int) -> np.ndarray:
        if object_id not in self._masks:
            raise PromptError(f"There is no object {object_id} in this session.")
        return self._masks[object_id].copy()

    def add_prompt(self, object_id: int, prompt: SlicePrompt, whole_volume: bool = False,
                   target_text: str = "", progress=None, should_stop=None) -> MaskUpdate:
        """As in-process: when ``should_stop()`` turns True the server is asked to cancel and this raises
        :class:`Cancelled` (the object is left as it was); ``progress`` is not reported (the server answers as a
        whole)."""
        return self._update(self._connection.stoppable_request("POST", self._path("/prompts"), should_stop,
                                                               self._path("/cancel"), json={
            "object_id": int(object_id), "prompt": prompt_to_message(prompt),
            "whole_volume": bool(whole_volume), "target_text": target_text}))

    def segment_text(self, text: str, axis: SliceAxis | str = SliceAxis.AXIAL, slice_index: int | None = None,
                     score_threshold: float = 0.5, progress=None, should_stop=None) -> list[MaskUpdate]:
        answer = self._connection.stoppable_request("POST", self._path("/text"), should_stop, self._path("/cancel"),
                                                    json={
            "text": text, "axis": SliceAxis.parse(axis).value,
            "slice_index": None if slice_index is None else int(slice_index), "score_threshold": score_threshold})
        return [self._update(message) for message in answer["updates"]]

    def set_mask(self, object_id: int, mask: np.ndarray, label: str = "") -> MaskUpdate:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != self.volume_shape:
            raise PromptError(f"The starting mask has shape {mask.shape}; the volume has {self.volume_shape}.")
        box, values = region_of_mask(mask)
        return self._update(self._connection.request("PUT", self._path(f"/objects/{int(object_id)}/mask"), json={
            "box": list(box), "bits": encode_mask_bits(values), "label": label}))

    def reset(self, object_id: int) -> MaskUpdate:
        return self._update(self._connection.request("POST", self._path(f"/objects/{int(object_id)}/reset")))

    def undo(self, object_id: int) -> MaskUpdate:
        return self._update(self._connection.request("POST", self._path(f"/objects/{int(object_id)}/undo")))

    def redo(self, object_id: int) -> MaskUpdate:
        return self._update(self._connection.request("POST", self._path(f"/objects/{int(object_id)}/redo")))

    def new_object_id(self) -> int:
        return max(self._masks, default=0) + 1

    def close(self) -> None:
        """Free the session on the server (a session already closed there is fine)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._connection.request("DELETE", self._path())
        except RemoteServerError:
            pass  # closed by the server's idle timeout, or the server is gone: nothing left to free


class RemoteBackend:
    """Inference on a medsam3 server (implements :class:`medsam3.transports.backend.SegmentationBackend`)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS):
        self._connection = _Connection(url, api_key, timeout)
        self._check_version()

    def _check_version(self) -> None:
        health = self._connection.request("GET", "/health")
        server_version = str(health.get("server_version", "unknown"))
        if not is_compatible(__version__, server_version):
            raise VersionMismatchError(mismatch_message(__version__, server_version))

    def info(self) -> BackendInfo:
        answer = self._connection.request("GET", "/info")
        fields = {name: answer[name] for name in ("model", "device", "image_size", "engine_version", "versions")
                  if name in answer}
        notes = tuple(answer.get("notes", ())) + (f"server {self._connection.url}",)
        return BackendInfo(**fields, transport="remote", notes=notes)

    def open_session(self, volume: Volume, preprocessing: Preprocessing | None = None) -> RemoteSession:
        params = {}
        if preprocessing is not None:
            params = {"window_low": preprocessing.low, "window_high": preprocessing.high}
        answer = self._connection.request("POST", "/sessions", content=encode_volume(volume), params=params,
                                          headers={"Content-Type": VOLUME_MEDIA_TYPE})
        return RemoteSession(self._connection, answer["session_id"], tuple(volume.array.shape))

    def close(self) -> None:
        self._connection.close()
