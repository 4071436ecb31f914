"""Errors as RFC 9457 problem documents (application/problem+json), one per failure, never a
traceback or a secret. ACME keeps its own error types (urn:ietf:params:acme:error:*) in the same shape."""

from __future__ import annotations

from starlette.responses import JSONResponse

from sync import errors, logs

PROBLEM = "application/problem+json"
BASE = "https://certsync.dev/problems/"  # type URIs: identifiers, documented in docs/server.md

_STATUS = [
    (errors.AuthError, 401, "unauthorized"),
    (errors.Forbidden, 403, "forbidden"),
    (errors.NotFound, 404, "not-found"),
    (errors.PayloadTooLarge, 413, "payload-too-large"),
    (errors.PolicyError, 403, "policy"),
    (errors.UsageError, 400, "bad-request"),
    (errors.LockError, 503, "busy"),
    (errors.StoreError, 503, "store-unavailable"),
]

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict | None = None,
    media_type: str = PROBLEM,
    type_uri: str | None = None,
    **extra,
) -> JSONResponse:
    body = {
        "type": type_uri or (BASE + kind if kind else "about:blank"),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": logs.redact(detail),
        **extra,
    }
    response = JSONResponse(body, status_code=status, media_type=media_type, headers=headers)
    if status == 401 and "www-authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = 'Bearer realm="certsync"'
    return response


def from_error(exc: errors.CertsyncError) -> JSONResponse:
    """The problem for a CertsyncError: its one-line message, the status its class means."""
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return problem(status, exc.message, kind=kind)
    return problem(500, exc.message, kind="internal")
