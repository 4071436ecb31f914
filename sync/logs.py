"""Logging for cron and CI: the stdlib `logging`, text or one JSON object per line, on stderr.

Every record from a `certsync.*` logger may carry `event`, `certificate` and `destination`
(pass them in `extra`). Text format (the default) keeps the human output as it was: the command's
report goes to stdout, and only warnings and errors the report does not already show go to stderr
as `warning: ...` / `error: ...`. JSON format (`--log-format json`) puts every record, each action
outcome included, on stderr as one JSON object per line:

    {"time": "2025-01-01T00:00:00.000Z", "level": "info", "event": "push.done",
     "certificate": "api", "destination": "aws-prod", "message": "..."}

`-q` drops info records; `--debug` adds debug ones. Whatever the format, messages pass through
`redact`: PEM blocks, credentials in URLs, query strings (SAS tokens), and values registered with
`add_secret` (the webhook URL, the master key) never reach the log. `redact_document` does the same
for JSON documents (--output json, GitHub files, webhook bodies).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, UTC
from typing import Any
from collections.abc import Collection

from sync.jsonstream import Lazy

ROOT = "certsync"
STANDARD_FIELDS = ("time", "level", "event", "certificate", "destination", "message")
EXTRA_FIELDS = ("remote_name", "action", "status", "command", "detail", "reason")

_secrets: set[str] = set()
_json_mode = False

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.DOTALL)
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_URL_QUERY = re.compile(r"(\bhttps?://[^\s?#]*)\?[^\s]*")
_SLACK_HOOK = re.compile(r"(hooks\.slack\.com/)[^\s]+")
# password=... wherever it appears: a URL's query (postgresql://u@h/db?password=...), a libpq
# conninfo string (host=h password=...), a form body. Whatever the scheme and the value's length.
PASSWORD_KEYS = ("password", "passwd", "pwd", "sslpassword", "secret", "client_secret", "token", "sig")
_PASSWORD_PARAM = re.compile(
    r"((?<![A-Za-z0-9_-])(?:" + "|".join(PASSWORD_KEYS) + r")\s*=\s*)"
    r"('[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)",
    re.IGNORECASE,
)


def add_secret(value: str | None) -> None:
    """Never log this value (a webhook URL, a password); short values are ignored."""
    if value and len(value) >= 8:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    text = _PEM.sub("[redacted PEM]", text)
    text = _URL_USERINFO.sub(r"\1[redacted]@", text)
    text = _URL_QUERY.sub(r"\1?[redacted]", text)
    text = _PASSWORD_PARAM.sub(r"\1[redacted]", text)
    return _SLACK_HOOK.sub(r"\1[redacted]", text)


def mask_password_params(text: str) -> str:
    """Only the password=... parameters of `text` masked (as `redact` does, among other things)."""
    return _PASSWORD_PARAM.sub(r"\1***", text)


def redact_document(value: Any, keep: Collection[str] = ()) -> Any:
    """`value` (a JSON-like document) with every string passed through `redact`, for outputs a
    script or a service reads (--output json, GitHub summary and outputs, webhook bodies). Keys
    in `keep` are left alone (a payload the user asked for, e.g. `export`'s PEM)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: v if k in keep else redact_document(v, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_document(v, keep) for v in value]
    if isinstance(value, Lazy):  # redacted item by item as it is written
        return value.map(lambda v: redact_document(v, keep))
    return value


def add_url_secrets(url: str) -> None:
    """Register the passwords a URL carries (user-info, password-like query parameters) with
    add_secret, so that they are masked even where a driver repeats them out of the URL."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        add_secret(unquote(parts.password))
    for key, value in parse_qsl(parts.query):
        if key.lower() in PASSWORD_KEYS:
            add_secret(value)


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, event, certificate, destination, message (+ extras)."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or record.name.removeprefix(ROOT + ".") or "log",
            "certificate": getattr(record, "certificate", None),
            "destination": getattr(record, "destination", None),
            "message": redact(record.getMessage()),
        }
        for key in EXTRA_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                document[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info and logging.getLogger(ROOT).isEnabledFor(logging.DEBUG):
            document["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(document, default=str)


class TextFormatter(logging.Formatter):
    """`level: message`, the style of the CLI's own `error: ...` lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {redact(record.getMessage())}"


class _Stderr(logging.Handler):
    """Writes to the sys.stderr of the moment (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # logging must never break a run
            self.handleError(record)


def _not_in_report(record: logging.LogRecord) -> bool:
    """In text mode the command's report already shows each action outcome."""
    return not getattr(record, "report", False)


def setup(fmt: str = "text", *, quiet: bool = False, debug: bool = False) -> logging.Logger:
    """Configure the `certsync` logger once per command (idempotent: replaces its handler)."""
    global _json_mode
    _json_mode = fmt == "json"
    add_secret(os.environ.get("CERTSYNC_MASTER_KEY"))
    logger, root = logging.getLogger(ROOT), logging.getLogger()
    for owner in (logger, root):
        for handler in list(owner.handlers):
            if isinstance(handler, _Stderr):
                owner.removeHandler(handler)
    if _json_mode:
        # other libraries' warnings (SDKs, Python warnings) become JSON lines too, never plain text
        outside = _Stderr()
        outside.setFormatter(JsonFormatter())
        outside.setLevel(logging.WARNING)
        root.addHandler(outside)
    logging.captureWarnings(_json_mode)
    handler = _Stderr()
    if _json_mode:
        handler.setFormatter(JsonFormatter())
        level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    else:
        handler.setFormatter(TextFormatter())
        handler.addFilter(_not_in_report)
        level = logging.DEBUG if debug else logging.WARNING
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def json_enabled() -> bool:
    return _json_mode


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT}.{name}")


def log_result(logger: logging.Logger, result) -> None:
    """One record per action outcome (an apply.Result): failed -> error, skipped -> warning."""
    action = result.action
    level = {"failed": logging.ERROR, "skipped": logging.WARNING}.get(result.status, logging.INFO)
    if not logger.isEnabledFor(level):
        return
    where = f" -> {action.destination}/{action.remote_name}" if action.destination else ""
    why = result.error if result.status in ("failed", "skipped") else (result.detail or action.reason)
    message = f"{action.kind} {action.cert}{where}: {result.status}" + (f" ({why})" if why else "")
    logger.log(
        level,
        message,
        extra={
            "event": f"{action.kind}.{result.status}",
            "certificate": action.cert,
            "destination": action.destination,
            "remote_name": action.remote_name,
            "action": action.kind,
            "status": result.status,
            "report": True,
        },
    )
