"""What every REST endpoint does around its work: the token (deny by default), the body (size,
media type, strict model), the one error shape, and JSON out."""

from __future__ import annotations

import json
from typing import TypeVar
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync.errors import CertsyncError, Forbidden, LockError, PayloadTooLarge, StoreError, UsageError
from sync.server import problems
from sync.server.auth import Principal, authenticate
from sync.server.state import ServerState

MAX_BODY = 64 * 1024
RETRY_AFTER = "5"  # seconds: a run (apply, renew) holds the lock, or the store is away
M = TypeVar("M", bound=BaseModel)


class Invalid(Exception):
    """A request that breaks the schema: 422 with one entry per field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors[0]["field"])
        self.errors = errors


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """pydantic's errors as (field, message), never echoing the value sent (it may be anything)."""
    return [
        {"field": prefix + (".".join(str(p) for p in e["loc"]) or "body"), "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


async def read_json(request: Request, model: type[M]) -> M:
    """The body as `model`: 413 past MAX_BODY, 415 unless JSON, 400 unless it parses, 422 per field."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"request body over {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"request body over {MAX_BODY} bytes")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMedia()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UsageError("the body is not JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(field_errors(exc)) from None


class Conflict(CertsyncError):
    """The request is fine but the certificate's state refuses it (already revoked, ...): 409."""


class UnsupportedMedia(CertsyncError):
    def __init__(self) -> None:
        super().__init__("the body must be application/json")


def query(request: Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise Invalid(field_errors(exc, "query.")) from None


def error_response(exc: Exception) -> Response:
    if isinstance(exc, Invalid):
        first = exc.errors[0]
        return problems.problem(422, f"{first['field']}: {first['message']}", kind="invalid", errors=exc.errors)
    if isinstance(exc, Conflict):
        return problems.problem(409, exc.message, kind="conflict")
    if isinstance(exc, UnsupportedMedia):
        return problems.problem(415, exc.message, kind="unsupported-media-type")
    if isinstance(exc, (LockError, StoreError)):
        response = problems.from_error(exc)
        response.headers["Retry-After"] = RETRY_AFTER
        return response
    assert isinstance(exc, CertsyncError)
    return problems.from_error(exc)


Handler = Callable[[Request, Principal], Awaitable[Response]]


def endpoint(state: ServerState, scope: str, handler: Handler):
    """An ASGI endpoint: authenticate for `scope` first (nothing about the request is looked at
    before the token is known good), then the handler; CertsyncErrors become problems."""

    async def run(request: Request) -> Response:
        try:
            principal = await run_in_threadpool(authenticate, state, request, scope, None, protocol="api")
            if principal.profile is None:  # a token always has one; deny rather than see everything
                raise Forbidden("this credential is bound to no profile")
            return await handler(request, principal)
        except (CertsyncError, Invalid) as exc:
            return error_response(exc)

    return run


def json_response(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status, headers=headers)
