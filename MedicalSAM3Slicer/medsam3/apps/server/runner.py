"""Serving the application with uvicorn."""

from __future__ import annotations

import signal
import ssl

from ...transports.backend import SegmentationBackend
from .app import create_app
from .header_deadline import header_deadline_protocol
from .settings import ServerSettings, ServerSettingsError, is_loopback


def _no_passphrase() -> str:
    raise ServerSettingsError("is protected by a passphrase")


def check_tls_files(certificate: str, key: str) -> None:
    """Load the certificate and key as the server will, and say in one line what is wrong (before the model loads):
    a file missing or unreadable, not PEM, a key that does not belong to the certificate, or a key with a
    passphrase."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certificate, key, password=_no_passphrase)
    except ServerSettingsError:
        raise ServerSettingsError(f"The TLS key {key} is protected by a passphrase: the server cannot ask for it; "
                                  "write an unencrypted copy readable only by the server's user (openssl pkey -in "
                                  "KEY -out KEY.plain).") from None
    except OSError as error:
        text = f"{getattr(error, 'reason', '') or ''} {error}".upper()
        if isinstance(error, ssl.SSLError) and "KEY_VALUES_MISMATCH" in text:
            raise ServerSettingsError(f"The TLS key {key} does not belong to the certificate {certificate}: give the "
                                      "private key the certificate was made for.") from None
        if not isinstance(error, ssl.SSLError):
            raise ServerSettingsError(f"Cannot read the TLS certificate or key ({error.strerror or error}: "
                                      f"{error.filename or certificate}).") from None
        raise ServerSettingsError(f"The TLS certificate {certificate} and key {key} cannot be loaded as PEM files "
                                  f"({getattr(error, 'reason', None) or error}): give a PEM certificate "
                                  "(-----BEGIN CERTIFICATE-----) and its unencrypted PEM private key.") from None


def reload_keys_on_hangup(app) -> bool:
    """``kill -HUP <server>`` reads the key file again at once (it is also read again within a second of a change);
    returns whether the signal handler was installed (a key file, on a system with SIGHUP)."""
    keys = getattr(app.state, "keys", None)
    if keys is None or keys.path is None or not hasattr(signal, "SIGHUP"):
        return False
    signal.signal(signal.SIGHUP, lambda *_: keys.reload_if_changed(force=True))
    return True


def uvicorn_config(app, settings: ServerSettings, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                   **overrides):
    """The uvicorn configuration the server runs with. ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed
    only from the operator's ``trusted_proxies`` (uvicorn would otherwise trust any client on 127.0.0.1, which
    lets it dodge the rate limit and fake its address in the logs)."""
    import uvicorn

    options = dict(host=settings.host, port=settings.port, log_level=settings.log_level, server_header=False,
                   ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, proxy_headers=bool(settings.trusted_proxies),
                   forwarded_allow_ips=list(settings.trusted_proxies) or None,
                   http=header_deadline_protocol(settings.header_timeout_seconds))
    options.update(overrides)
    return uvicorn.Config(app, **options)


def run_server(backend: SegmentationBackend, settings: ServerSettings, ssl_certfile: str | None = None,
               ssl_keyfile: str | None = None) -> None:
    """Serve until interrupted. Without TLS on a non-loopback address, the API key crosses the network in clear:
    give a certificate here, or put the server behind an HTTPS reverse proxy."""
    import uvicorn

    settings.check()
    if ssl_certfile:
        check_tls_files(ssl_certfile, ssl_keyfile)
    app = create_app(backend, settings)
    reload_keys_on_hangup(app)
    scheme = "https" if ssl_certfile else "http"
    print(f"medsam3 server on {scheme}://{settings.host}:{settings.port} "
          f"(API key {'required' if settings.require_api_key else 'OFF, loopback only'})", flush=True)
    if not ssl_certfile and not is_loopback(settings.host):
        print("warning: no TLS certificate: put the server behind an HTTPS proxy, or pass --ssl-certfile and "
              "--ssl-keyfile, so the API key is not sent in clear.", flush=True)
    uvicorn.Server(uvicorn_config(app, settings, ssl_certfile, ssl_keyfile)).run()
