"""The FastAPI application: sessions on uploaded volumes, prompts in, changed mask regions out.

Every request except ``GET /health`` passes the gate (gate.py) before any of its body is read: a per-client rate
limit, the API key (hashed, compared in constant time, never logged; one per user with a key file) and the
client's version; then its body is read against a deadline, counted in the memory budget as it arrives. A session
belongs to the user whose key opened it: for other users it does not exist. Errors are JSON
``{"error": {"kind", "message"}}`` with a 4xx status; engine errors about a prompt or a volume never reach other
sessions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException

from ... import __version__
from ...transports.backend import SegmentationBackend
from ...interaction.embedding_cache import EmbeddingCache
from ...errors import Cancelled, MedSam3Error
from ...model.preprocessing import Preprocessing
from ...interaction.prompts import MAX_INDEX, parse_text_targets
from ...geometry.slicing import SliceAxis, SliceGeometry
from ...transports.version_compatibility import matching_versions
from ...transports.wire_format import (VOLUME_MEDIA_TYPE, WireFormatError, decode_volume, decoded_bytes, full_mask_from_region,
                           mask_update_to_message, read_volume_header, prompt_from_message, voxel_count)
from .access_log import install_access_log_redaction
from .allocator import limit_malloc_arenas
from .api_errors import ApiError, error_response
from .gate import BUDGET, UPLOAD, USER, RequestGate
from .keys import KeyRing, User
from .cancellable import run_until_disconnected
from .memory_budget import (CACHE_SHARE, MemoryBudget, RequestKind, Reservation, request_bytes, session_bytes,
                            upload_bytes, voxels_of)
from .rate_limit import RateLimiter
from .schemas import (CancelResponse, ErrorMessage, Health, MaskUpdateMessage, PromptRequest, SessionClosed,
                      SessionCreated, SetMaskRequest, TextRequest, TextResponse)
from .session_registry import OpenSession, SessionRegistry
from .settings import ServerSettings

log = logging.getLogger("medsam3.server")  # the logger name users configure; unchanged by the move to apps/

SessionId = Path(min_length=1, max_length=64, description="the id returned by POST /sessions")
ObjectIdPath = Path(ge=1, le=MAX_INDEX)
_ERROR_RESPONSES = {status: {"model": ErrorMessage}
                    for status in (400, 401, 403, 404, 409, 413, 422, 426, 429)}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError):
        return error_response(error.status, error.kind, error.message, error.retry_after)

    @app.exception_handler(WireFormatError)
    async def wire_format_error(_request: Request, error: WireFormatError):
        return error_response(400, type(error).__name__, str(error))

    @app.exception_handler(Cancelled)
    async def cancelled(_request: Request, error: Cancelled):
        return error_response(409, "Cancelled", str(error))

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


def _caller(request: Request) -> User:
    """The user the gate identified by their key (gate.py)."""
    return request.scope[USER]


def _caller_budget(request: Request) -> MemoryBudget:
    """The caller's share of the memory budget (it charges the server's budget too)."""
    return request.scope[BUDGET]


async def _close_idle_sessions_periodically(registry: SessionRegistry) -> None:
    """Free idle sessions' memory even when no request comes in to notice them."""
    interval = min(60.0, max(1.0, registry.idle_timeout_seconds / 2))
    while True:
        await asyncio.sleep(interval)
        await run_in_threadpool(registry.close_idle)


def _budget_the_cache(backend: SegmentationBackend, budget: MemoryBudget) -> None:
    """The engine's embedding cache gets a share of the budget and holds it from the start."""
    cache = getattr(getattr(backend, "engine", None), "cache", None)
    if isinstance(cache, EmbeddingCache):
        cache.max_bytes = min(cache.max_bytes, int(budget.total * CACHE_SHARE))
        budget.reserve(cache.max_bytes, "The cache of slice encodings", pinned=True)


def _slice_counts(volume) -> dict[str, int]:
    return {axis.value: SliceGeometry.for_volume(volume, axis).slice_count for axis in SliceAxis}


def _check_cost(settings: ServerSettings, phrases: int, slices: int) -> None:
    """Refuse a request that would hold the model too long: too many phrases, or slices x phrases."""
    if phrases > settings.max_phrases:
        raise ApiError(413, "TooManyPhrases", f"The text has {phrases} phrases; this server takes at most "
                       f"{settings.max_phrases} per request: send them in several requests.")
    if phrases * slices > settings.max_slice_phrases:
        raise ApiError(413, "RequestTooCostly", f"This request would run the model on {slices} slices x {phrases} "
                       f"phrase(s) = {phrases * slices:,}; this server allows {settings.max_slice_phrases:,} per "
                       "request: send fewer phrases at a time, or segment one slice (slice_index) first.")


def _take_upload(request: Request) -> tuple[bytearray, Reservation]:
    """The upload body the gate read, and its memory reservation (the route owns both from now on)."""
    return request.scope.pop(UPLOAD)


def create_app(backend: SegmentationBackend, settings: ServerSettings,
               clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """The server application around ``backend``; ``clock`` drives the idle timeout and rate limit (tests
    pass a fake clock)."""
    settings.check()
    limit_malloc_arenas()  # resident memory follows what the budget counts (allocator.py)
    budget = MemoryBudget(settings.memory_budget_bytes)
    _budget_the_cache(backend, budget)
    registry = SessionRegistry(settings.max_sessions, settings.idle_timeout_seconds, clock)
    limiter = RateLimiter(settings.requests_per_minute, clock)
    keys = (KeyRing.from_file(settings.key_file, clock) if settings.key_file else
            KeyRing.single(settings.api_key) if settings.api_key else None)
    install_access_log_redaction()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        sweeper = asyncio.create_task(_close_idle_sessions_periodically(registry))
        yield
        sweeper.cancel()
        registry.close_all()

    app = FastAPI(lifespan=lifespan, title="MedicalSAM3 inference server", version=__version__,
                  description="Segment uploaded CT/MRI volumes with Medical SAM3 from clicks, boxes and text.",
                  responses=_ERROR_RESPONSES, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.registry = registry
    app.state.budget = budget
    app.state.keys = keys
    app.add_middleware(RequestGate, settings=settings, keys=keys, limiter=limiter, budget=budget,
                       memory_quota=lambda user: keys.quota_memory(user, budget.capacity) if keys else budget.capacity)
    _install_error_handlers(app)

    @app.get("/health", response_model=Health, tags=["server"])
    def health() -> dict:
        """Liveness and versions; needs no key (a client checks its version here before anything else)."""
        return {"status": "ok", "server_version": __version__, "compatible_client_versions": matching_versions()}

    bearer = HTTPBearer(auto_error=False, description="the server's API key (the gate checks it, gate.py)")
    api = APIRouter(dependencies=[Depends(bearer)])

    def session_quota(user: User) -> int:
        return keys.quota_sessions(user, settings.max_sessions) if keys else settings.max_sessions

    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        """The API schema (behind the key, like every request but /health)."""
        return JSONResponse(app.openapi())

    @api.get("/info", tags=["server"])
    def info(user: User = Depends(_caller), own: MemoryBudget = Depends(_caller_budget)) -> dict:
        """The model, device and versions inference runs with, the server's limits, and the caller's sessions and
        quotas (never another user's)."""
        return {**backend.info().as_dict(), "server_version": __version__,
                "compatible_client_versions": matching_versions(), "limits": settings.public_limits(),
                "request_limits": {"max_json_bytes": settings.max_json_bytes,
                                   "read_timeout_seconds": settings.read_timeout_seconds},
                "user": user.name, "open_sessions": registry.count(user.name), "memory_in_use_bytes": budget.used,
                "your_memory_in_use_bytes": own.used, "your_memory_quota_bytes": own.total,
                "your_max_sessions": session_quota(user)}

    @api.post("/sessions", status_code=201, response_model=SessionCreated, tags=["sessions"], openapi_extra={
        "requestBody": {"required": True, "description": "the volume: see medsam3.transports.wire_format.encode_volume",
                        "content": {VOLUME_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
    async def open_session(request: Request, user: User = Depends(_caller),
                           window_low: float | None = Query(None, allow_inf_nan=False),
                           window_high: float | None = Query(None, allow_inf_nan=False)) -> dict:
        """Upload a volume (once per session) with its geometry and modality; returns the session id.

        ``window_low`` / ``window_high`` fix the intensity window; without them the engine chooses one. The
        volume is kept in the smallest voxel type that holds it exactly; what it needs while decoding and
        holds afterwards comes out of the server's memory budget (413, or 429 with Retry-After, when it does not fit)."""
        preprocessing = None
        if window_low is not None or window_high is not None:
            if window_low is None or window_high is None or not window_high > window_low:
                raise ApiError(422, "InvalidWindow", "Give both window_low and window_high, with high > low.")
            preprocessing = Preprocessing(window_low, window_high, "client-window")
        body, reservation = _take_upload(request)
        try:
            header, _ = read_volume_header(body)
            if voxel_count(header) > settings.max_voxels:
                raise ApiError(413, "TooManyVoxels", f"The volume has {voxel_count(header):,} voxels; this server "
                               f"accepts at most {settings.max_voxels:,}. Crop or downsample it first.")
            reservation.what = "Decoding this volume"
            reservation.grow(upload_bytes(len(body), decoded_bytes(header)))
            volume = await run_in_threadpool(decode_volume, bytes(body) if len(body) < 65536 else body)
            del body
            session = await run_in_threadpool(backend.open_session, volume, preprocessing)
            reservation.what = "This session"
            reservation.resize(session_bytes(session) or volume.array.nbytes)
            session_id = registry.add(session, volume.array.shape, reservation, _slice_counts(volume), user.name,
                                      session_quota(user))
        except BaseException:
            reservation.release()
            raise
        log.info("opened session %s on a %s %s volume", session_id[:6], "x".join(map(str, volume.array.shape)),
                 volume.array.dtype.name)
        return {"session_id": session_id, "shape": list(volume.array.shape),
                "idle_timeout_seconds": settings.idle_timeout_seconds}

    def run_on_session(user: User, own: MemoryBudget, session_id: str, stop: threading.Event, kind: RequestKind,
                       work: Callable[[OpenSession], dict], phrases: int = 1) -> dict:
        """``work(entry)`` on the caller's locked session, its memory reserved, the session's size measured after."""
        with registry.use(session_id, stop, user.name) as entry:
            with own.reserve(request_bytes(voxels_of(entry.volume_shape), kind, phrases), "This request"):
                try:
                    return work(entry)
                finally:
                    if entry.reservation is not None:
                        entry.reservation.resize(session_bytes(entry.session) or entry.reservation.bytes)

    @api.post("/sessions/{session_id}/prompts", response_model=MaskUpdateMessage, tags=["segmentation"])
    async def add_prompt(http: Request, request: PromptRequest, session_id: str = SessionId) -> dict:
        """Clicks / a box / a starting slice mask for one object, on its slice or through the whole volume.
        A propagation stops when its client disconnects or calls ``/cancel``."""
        user, own = _caller(http), _caller_budget(http)
        prompt = prompt_from_message(request.prompt.model_dump())
        entry = registry.peek(session_id, user.name)
        _check_cost(settings, 1, entry.slice_counts.get(prompt.axis.value if isinstance(prompt.axis, SliceAxis)
                                                        else str(prompt.axis), 1) if request.whole_volume else 1)

        def work(stop: threading.Event) -> dict:
            return run_on_session(user, own, session_id, stop, RequestKind.PROMPT, lambda entry: mask_update_to_message(
                entry.session.add_prompt(request.object_id, prompt, request.whole_volume, request.target_text,
                                         should_stop=stop.is_set)))

        return await run_until_disconnected(http, work)

    @api.post("/sessions/{session_id}/text", response_model=TextResponse, tags=["segmentation"])
    async def segment_text(http: Request, request: TextRequest, session_id: str = SessionId) -> dict:
        """Every typed phrase becomes a new object (on one slice, or through the volume without slice_index).
        The cost is bounded (phrases, slices x phrases); the work stops when its client disconnects or calls
        ``/cancel``."""
        user, own = _caller(http), _caller_budget(http)
        phrases = len(parse_text_targets(request.text))
        entry = registry.peek(session_id, user.name)
        _check_cost(settings, phrases, 1 if request.slice_index is not None else entry.slice_counts.get(
            request.axis, 1))

        def work(stop: threading.Event) -> dict:
            def segment(entry: OpenSession) -> dict:
                updates = entry.session.segment_text(request.text, request.axis, request.slice_index,
                                                     request.score_threshold, should_stop=stop.is_set)
                return {"updates": [mask_update_to_message(u) for u in updates]}

            return run_on_session(user, own, session_id, stop, RequestKind.TEXT, segment, phrases)

        return await run_until_disconnected(http, work)

    @api.post("/sessions/{session_id}/cancel", response_model=CancelResponse, tags=["segmentation"])
    def cancel(http: Request, session_id: str = SessionId) -> dict:
        """Stop the propagation running on a session (and the requests waiting for it) at its next slice; each
        answers 409 Cancelled and leaves its object as it was."""
        return {"session_id": session_id, "stopping": registry.cancel(session_id, _caller(http).name)}

    def edit(http: Request, session_id: str, change: Callable[[OpenSession], object],
             kind: RequestKind = RequestKind.EDIT) -> dict:
        return run_on_session(_caller(http), _caller_budget(http), session_id, threading.Event(), kind,
                              lambda entry: mask_update_to_message(change(entry)))

    @api.post("/sessions/{session_id}/objects/{object_id}/undo", response_model=MaskUpdateMessage,
              tags=["segmentation"])
    def undo(http: Request, session_id: str = SessionId, object_id: int = ObjectIdPath) -> dict:
        return edit(http, session_id, lambda entry: entry.session.undo(object_id))

    @api.post("/sessions/{session_id}/objects/{object_id}/redo", response_model=MaskUpdateMessage,
              tags=["segmentation"])
    def redo(http: Request, session_id: str = SessionId, object_id: int = ObjectIdPath) -> dict:
        return edit(http, session_id, lambda entry: entry.session.redo(object_id))

    @api.post("/sessions/{session_id}/objects/{object_id}/reset", response_model=MaskUpdateMessage,
              tags=["segmentation"])
    def reset(http: Request, session_id: str = SessionId, object_id: int = ObjectIdPath) -> dict:
        return edit(http, session_id, lambda entry: entry.session.reset(object_id))

    @api.put("/sessions/{session_id}/objects/{object_id}/mask", response_model=MaskUpdateMessage,
             tags=["segmentation"])
    def set_mask(http: Request, request: SetMaskRequest, session_id: str = SessionId,
                 object_id: int = ObjectIdPath) -> dict:
        """Start an object from an existing mask, sent as its bounding box and the bits inside it (a box with an
        empty side is refused: 422)."""
        return edit(http, session_id, lambda entry: entry.session.set_mask(
            object_id, full_mask_from_region(request.box, request.bits, entry.volume_shape), request.label),
            RequestKind.MASK)

    @api.delete("/sessions/{session_id}", response_model=SessionClosed, tags=["sessions"])
    def close_session(http: Request, session_id: str = SessionId) -> dict:
        """Close a session, stop its work and free its memory."""
        registry.close(session_id, _caller(http).name)
        return {"session_id": session_id, "closed": True}

    app.include_router(api)
    return app
