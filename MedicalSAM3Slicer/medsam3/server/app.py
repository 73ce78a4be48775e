"""The FastAPI application: sessions on uploaded volumes, prompts in, changed mask regions out.

Every request except ``GET /health`` passes the guard: a per-client rate limit, the API key (compared in
constant time, never logged) and the client's version. Errors are JSON ``{"error": {"kind", "message"}}`` with a
4xx status; engine errors about a prompt or a volume never reach other sessions.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from .. import __version__
from ..backend import SegmentationBackend
from ..errors import MedSam3Error
from ..preprocessing import Preprocessing
from ..version_compatibility import CLIENT_VERSION_HEADER, is_compatible, matching_versions, mismatch_message
from ..wire_format import (VOLUME_MEDIA_TYPE, WireFormatError, decode_volume, full_mask_from_region,
                           mask_update_to_message, read_volume_header, slice_prompt_from_message, voxel_count)
from .api_errors import ApiError, error_response
from .body_limit import BodySizeLimit
from .rate_limit import RateLimiter
from .schemas import (ErrorMessage, Health, MaskUpdateMessage, PromptRequest, SessionClosed, SessionCreated,
                      SetMaskRequest, TextRequest, TextResponse)
from .session_registry import SessionRegistry
from .settings import ServerSettings

log = logging.getLogger("medsam3.server")

SessionId = Path(min_length=1, max_length=64, description="the id returned by POST /sessions")
ObjectIdPath = Path(ge=1, le=2**31 - 1)
_ERROR_RESPONSES = {status: {"model": ErrorMessage} for status in (400, 401, 403, 404, 413, 422, 426, 429)}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError):
        return error_response(error.status, error.kind, error.message, error.retry_after)

    @app.exception_handler(WireFormatError)
    async def wire_format_error(_request: Request, error: WireFormatError):
        return error_response(400, type(error).__name__, str(error))

    @app.exception_handler(MedSam3Error)
    async def engine_error(_request: Request, error: MedSam3Error):
        return error_response(422, type(error).__name__, str(error))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                             for e in error.errors()[:5])
        return error_response(422, "InvalidRequest", f"The request does not match the API: {problems}.")

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException):
        return error_response(error.status_code, "HTTPError", str(error.detail))


def _guard(settings: ServerSettings, limiter: RateLimiter) -> Callable:
    """The dependency every non-health request passes: rate limit, API key, client version."""
    expected_key = (settings.api_key or "").encode()
    bearer = HTTPBearer(auto_error=False, description="the server's API key")

    def guard(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        client = request.client.host if request.client else "unknown"
        wait = limiter.allow(client)
        if wait:
            raise ApiError(429, "RateLimited", f"Too many requests: this server accepts "
                           f"{settings.requests_per_minute} per minute per client. Retry in {wait:.0f} s.",
                           retry_after=wait)
        if settings.require_api_key:
            if credentials is None:
                raise ApiError(401, "MissingApiKey", "This server needs an API key: send it as "
                               "'Authorization: Bearer <key>' (Slicer: the server settings; command line: --api-key).")
            if not hmac.compare_digest(credentials.credentials.encode(), expected_key):
                raise ApiError(403, "WrongApiKey", "The API key is not this server's key: check it with the "
                               "server's operator.")
        client_version = request.headers.get(CLIENT_VERSION_HEADER)
        if client_version and not is_compatible(client_version, __version__):
            raise ApiError(426, "VersionMismatch", mismatch_message(client_version, __version__))

    return guard


async def _close_idle_sessions_periodically(registry: SessionRegistry) -> None:
    """Free idle sessions' memory even when no request comes in to notice them."""
    interval = min(60.0, max(1.0, registry.idle_timeout_seconds / 2))
    while True:
        await asyncio.sleep(interval)
        await run_in_threadpool(registry.close_idle)


def create_app(backend: SegmentationBackend, settings: ServerSettings,
               clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """The server application around ``backend``; ``clock`` drives the idle timeout and rate limit (tests
    pass a fake clock)."""
    settings.check()
    registry = SessionRegistry(settings.max_sessions, settings.idle_timeout_seconds, clock)
    limiter = RateLimiter(settings.requests_per_minute, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        sweeper = asyncio.create_task(_close_idle_sessions_periodically(registry))
        yield
        sweeper.cancel()
        registry.close_all()

    app = FastAPI(lifespan=lifespan, title="MedicalSAM3 inference server", version=__version__,
                  description="Segment uploaded CT/MRI volumes with Medical SAM3 from clicks, boxes and text.",
                  responses=_ERROR_RESPONSES)
    app.state.registry = registry
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    _install_error_handlers(app)

    @app.get("/health", response_model=Health, tags=["server"])
    def health() -> dict:
        """Liveness and versions; needs no key (a client checks its version here before anything else)."""
        return {"status": "ok", "server_version": __version__, "compatible_client_versions": matching_versions()}

    api = APIRouter(dependencies=[Depends(_guard(settings, limiter))])

    @api.get("/info", tags=["server"])
    def info() -> dict:
        """The model, device and versions inference runs with, and the server's limits."""
        return {**backend.info().as_dict(), "server_version": __version__,
                "compatible_client_versions": matching_versions(), "limits": settings.public_limits(),
                "open_sessions": len(registry)}

    @api.post("/sessions", status_code=201, response_model=SessionCreated, tags=["sessions"], openapi_extra={
        "requestBody": {"required": True, "description": "the volume: see medsam3.wire_format.encode_volume",
                        "content": {VOLUME_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
    async def open_session(request: Request,
                           window_low: float | None = Query(None, allow_inf_nan=False),
                           window_high: float | None = Query(None, allow_inf_nan=False)) -> dict:
        """Upload a volume (once per session) with its geometry and modality; returns the session id.

        ``window_low`` / ``window_high`` fix the intensity window; without them the engine chooses one."""
        body = await request.body()
        header, _ = read_volume_header(body)
        if voxel_count(header) > settings.max_voxels:
            raise ApiError(413, "TooManyVoxels", f"The volume has {voxel_count(header):,} voxels; this server "
                           f"accepts at most {settings.max_voxels:,}. Crop or downsample it first.")
        preprocessing = None
        if window_low is not None or window_high is not None:
            if window_low is None or window_high is None or not window_high > window_low:
                raise ApiError(422, "InvalidWindow", "Give both window_low and window_high, with high > low.")
            preprocessing = Preprocessing(window_low, window_high, "client-window")
        volume = await run_in_threadpool(decode_volume, body)
        session = await run_in_threadpool(backend.open_session, volume, preprocessing)
        session_id = registry.add(session, volume.array.shape)
        log.info("opened session %s on a %s volume", session_id[:6], "x".join(map(str, volume.array.shape)))
        return {"session_id": session_id, "shape": list(volume.array.shape),
                "idle_timeout_seconds": settings.idle_timeout_seconds}

    @api.post("/sessions/{session_id}/prompts", response_model=MaskUpdateMessage, tags=["segmentation"])
    def add_prompt(request: PromptRequest, session_id: str = SessionId) -> dict:
        """Clicks / a box / a starting slice mask for one object, on its slice or through the whole volume."""
        prompt = slice_prompt_from_message(request.prompt.model_dump())
        with registry.use(session_id) as entry:
            return mask_update_to_message(entry.session.add_prompt(request.object_id, prompt, request.whole_volume,
                                                    request.target_text))

    @api.post("/sessions/{session_id}/text", response_model=TextResponse, tags=["segmentation"])
    def segment_text(request: TextRequest, session_id: str = SessionId) -> dict:
        """Every typed phrase becomes a new object (on one slice, or through the volume without slice_index)."""
        with registry.use(session_id) as entry:
            updates = entry.session.segment_text(request.text, request.axis, request.slice_index,
                                                 request.score_threshold)
            return {"updates": [mask_update_to_message(u) for u in updates]}

    @api.post("/sessions/{session_id}/objects/{object_id}/undo", response_model=MaskUpdateMessage,
              tags=["segmentation"])
    def undo(session_id: str = SessionId, object_id: int = ObjectIdPath) -> dict:
        with registry.use(session_id) as entry:
            return mask_update_to_message(entry.session.undo(object_id))

    @api.post("/sessions/{session_id}/objects/{object_id}/redo", response_model=MaskUpdateMessage,
              tags=["segmentation"])
    def redo(session_id: str = SessionId, object_id: int = ObjectIdPath) -> dict:
        with registry.use(session_id) as entry:
            return mask_update_to_message(entry.session.redo(object_id))

    @api.post("/sessions/{session_id}/objects/{object_id}/reset", response_model=MaskUpdateMessage,
              tags=["segmentation"])
    def reset(session_id: str = SessionId, object_id: int = ObjectIdPath) -> dict:
        with registry.use(session_id) as entry:
            return mask_update_to_message(entry.session.reset(object_id))

    @api.put("/sessions/{session_id}/objects/{object_id}/mask", response_model=MaskUpdateMessage,
             tags=["segmentation"])
    def set_mask(request: SetMaskRequest, session_id: str = SessionId, object_id: int = ObjectIdPath) -> dict:
        """Start an object from an existing mask, sent as its bounding box and the bits inside it."""
        with registry.use(session_id) as entry:
            mask = full_mask_from_region(request.box, request.bits, entry.volume_shape)
            return mask_update_to_message(entry.session.set_mask(object_id, mask, request.label))

    @api.delete("/sessions/{session_id}", response_model=SessionClosed, tags=["sessions"])
    def close_session(session_id: str = SessionId) -> dict:
        """Close a session and free its memory."""
        registry.close(session_id)
        return {"session_id": session_id, "closed": True}

    app.include_router(api)
    return app
