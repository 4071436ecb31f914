"""One JSON POST with a timeout and one retry: the HTTP client of alerts (sync.notify) and deploy
webhooks (sync.reconcile.hooks). Errors never carry the URL (it may embed a token) nor the
headers (an Authorization value)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from sync import logs

TIMEOUT_SECONDS = 10.0
RETRY_PAUSE_SECONDS = 1.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a 301/302/303 with our headers (Authorization) to any host: refuse; the
    3xx becomes an HTTPError ("HTTP 302"), a failed delivery."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class DeliveryError(Exception):
    """Says what went wrong without the URL (it may embed a token)."""


def why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return "timed out"
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror
        return reason.__class__.__name__ if not isinstance(reason, str) else "connection failed"
    return exc.__class__.__name__


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return True


def send(
    url: str,
    body: dict,
    *,
    timeout: float = TIMEOUT_SECONDS,
    attempts: int = 2,
    pause: float = RETRY_PAUSE_SECONDS,
    headers: Mapping[str, str] | None = None,
) -> None:
    """POST `body` as JSON; retry once on a network error, a timeout, a 5xx or a 429. `headers`
    (e.g. Authorization) are sent as given and registered as secrets for the logs."""
    logs.add_secret(url)
    for value in (headers or {}).values():
        logs.add_secret(value)
    if not url.lower().startswith(("https://", "http://")):
        raise DeliveryError("not an http(s) URL")
    data = json.dumps(logs.redact_document(body)).encode()  # error text may repeat credentials
    last = "no attempt"
    for attempt in range(attempts):
        request = urllib.request.Request(  # noqa: S310  http(s) only: checked above
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "certsync", **(headers or {})},
        )
        try:
            with _opener.open(request, timeout=timeout) as response:  # http(s) only: checked above
                response.read()
            return
        except Exception as exc:  # urllib raises several kinds; all become one line without the URL
            last = why(exc)
            if not _retryable(exc):
                break
        if attempt + 1 < attempts:
            time.sleep(pause)
    raise DeliveryError(f"{last} after {attempt + 1} attempt(s)")
