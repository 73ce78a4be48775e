"""Who may use the page, and the routes beside trame's: downloads, and the test-only state endpoint.

With a key (required off loopback, :mod:`.options`), every HTTP request and the websocket need it: the first page
load carries it as ``?key=KEY`` and gets it back as an HttpOnly, SameSite=Strict cookie, which the browser then sends
with every request, the websocket included. A request without it gets 401 and one line saying what to do.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from aiohttp import web

from .options import same_key

COOKIE = "medsam3_web_key"


def key_middleware(key: str):
    @web.middleware
    async def check_key(request: web.Request, handler):
        given = request.query.get("key")
        if same_key(given, key):
            response = await handler(request)
            if not isinstance(response, web.WebSocketResponse):
                response.set_cookie(COOKIE, key, httponly=True, samesite="Strict")
            return response
        if same_key(request.cookies.get(COOKIE), key):
            return await handler(request)
        return web.Response(status=401, text="medsam3 web: this page needs its key: open it as "
                                             "http://HOST:PORT/?key=KEY (ask whoever started medsam3 web)\n")
    return check_key


def scene_state(annotation) -> dict:
    """What the scene holds (test endpoint): each segment's name, colour, visibility, voxel count and the voxel
    (i, j, k) bounds of its mask on the source grid; the typed target; the model's timing and the process memory."""
    rows = []
    for row in annotation.segments():
        mask = annotation.segment_mask(row["id"])
        found = np.nonzero(mask)
        bounds = [[int(found[axis].min()), int(found[axis].max())] for axis in (2, 1, 0)] if found[0].size else None
        digest = hashlib.sha256(np.packbits(mask.astype(bool)).tobytes()).hexdigest()  # (K, J, I) order
        rows.append({**row, "voxels": int(mask.sum()), "ijk_bounds": bounds, "mask_sha256": digest})
    import psutil

    volume = annotation.volume_node.GetName() if annotation.volume_node is not None else None
    return {"volume": volume, "images": [row["name"] for row in annotation.image_list()],
            "segments": rows, "busy": annotation.busy, "status": annotation.status,
            "target": annotation.text,  # the typed target as the server has it (the page syncs it on change)
            "tool": annotation.tool,  # likewise the mouse tool: clicks in a view travel on another channel
            "timing": dict(annotation.last_timing), "rss_bytes": psutil.Process(os.getpid()).memory_info().rss}


def install(server, page, key: str | None, expose_state: bool) -> None:
    """Add the key check and the routes when trame binds its aiohttp application (before it starts)."""

    async def download(request: web.Request):
        path = page.downloads.get(request.match_info["token"])
        if path is None or not path.exists():
            return web.Response(status=404, text="medsam3 web: no such export: export again\n")
        return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'})

    async def state(_request: web.Request):
        return web.json_response(scene_state(page.annotation))

    def bind(wslink_server):
        app = wslink_server.app
        if key:
            app.middlewares.append(key_middleware(key))
        app.router.add_get("/medsam3/download/{token}", download)
        if expose_state:
            app.router.add_get("/medsam3/state", state)

    server.controller.on_server_bind.add(bind)
