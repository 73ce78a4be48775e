"""Serving the application with uvicorn."""

from __future__ import annotations

from ...transports.backend import SegmentationBackend
from .app import create_app
from .settings import ServerSettings, is_loopback


def uvicorn_config(app, settings: ServerSettings, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                   **overrides):
    """The uvicorn configuration the server runs with. ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed
    only from the operator's ``trusted_proxies`` (uvicorn would otherwise trust any client on 127.0.0.1, which
    lets it dodge the rate limit and fake its address in the logs)."""
    import uvicorn

    options = dict(host=settings.host, port=settings.port, log_level=settings.log_level, server_header=False,
                   ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, proxy_headers=bool(settings.trusted_proxies),
                   forwarded_allow_ips=list(settings.trusted_proxies) or None)
    options.update(overrides)
    return uvicorn.Config(app, **options)


def run_server(backend: SegmentationBackend, settings: ServerSettings, ssl_certfile: str | None = None,
               ssl_keyfile: str | None = None) -> None:
    """Serve until interrupted. Without TLS on a non-loopback address, the API key crosses the network in clear:
    give a certificate here, or put the server behind an HTTPS reverse proxy."""
    import uvicorn

    settings.check()
    app = create_app(backend, settings)
    scheme = "https" if ssl_certfile else "http"
    print(f"medsam3 server on {scheme}://{settings.host}:{settings.port} "
          f"(API key {'required' if settings.require_api_key else 'OFF, loopback only'})", flush=True)
    if not ssl_certfile and not is_loopback(settings.host):
        print("warning: no TLS certificate: put the server behind an HTTPS proxy, or pass --ssl-certfile and "
              "--ssl-keyfile, so the API key is not sent in clear.", flush=True)
    uvicorn.Server(uvicorn_config(app, settings, ssl_certfile, ssl_keyfile)).run()
