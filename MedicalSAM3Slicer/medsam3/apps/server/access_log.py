"""Access log lines without secrets: query values (a key sent by mistake as ``?api_key=``) are masked and
session ids are shortened to the six characters the application's own log shows."""

from __future__ import annotations

import logging
import re

_SESSION_ID = re.compile(r"(/sessions/)([^/?#]{6})[^/?#]*")


def redact_path(path: str) -> str:
    """``/sessions/AbCdEf123.../text?api_key=s3cret`` -> ``/sessions/AbCdEf…/text?api_key=…``."""
    path, question, query = path.partition("?")
    path = _SESSION_ID.sub(lambda match: match.group(1) + match.group(2) + "…", path)
    if question:
        path += "?" + "&".join(part.split("=", 1)[0] + "=…" for part in query.split("&") if part)
    return path


class RedactingAccessLog(logging.Filter):
    """A filter for uvicorn's access logger (its record arguments: client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            arguments = list(record.args)
            arguments[2] = redact_path(arguments[2])
            record.args = tuple(arguments)
        return True


def install_access_log_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactingAccessLog) for f in access.filters):
        access.addFilter(RedactingAccessLog())
