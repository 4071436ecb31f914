"""The ASGI application of `certsync serve`: every protocol's routes, one error shape, and the
middleware that rate-limits, measures and logs each request.

    build(config)                  everything (the TLS listener)
    build(config, revocation_only=True)   CRL, OCSP and /healthz (the plain-HTTP listener)
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from sync.app import App
from sync.config import Config
from sync.errors import CertsyncError
from sync.server import acme, api, dashboard, est, observability, problems, revocation
from sync.server.state import ServerState

log = logging.getLogger("certsync.server")


def build(
    config: Config, *, app: App | None = None, state: ServerState | None = None, revocation_only: bool = False
) -> observability.Observe:
    state = state or ServerState(config, app)
    routes: list[BaseRoute] = [Route("/healthz", observability.healthz(state)), *revocation.routes(state)]
    if not revocation_only:
        routes += [
            Route("/metrics", observability.metrics(state)),
            *est.routes(state),
            *acme.routes(state),
            *api.routes(state),
            *dashboard.routes(state),
        ]

    @asynccontextmanager
    async def lifespan(_app):
        state.open()
        yield

    asgi = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={CertsyncError: _certsync_error, HTTPException: _http_error, Exception: _internal_error},
    )
    asgi.state.certsync = state
    return observability.Observe(asgi, state)


async def _certsync_error(request: Request, exc: Exception):
    assert isinstance(exc, CertsyncError)
    return problems.from_error(exc)


async def _http_error(request: Request, exc: Exception):
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else problems.TITLES.get(exc.status_code, "Error")
    return problems.problem(exc.status_code, detail, headers=dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception):
    log.error(
        "internal error on %s %s: %s",
        request.method,
        request.url.path,
        exc.__class__.__name__,
        exc_info=log.isEnabledFor(logging.DEBUG),
    )
    return problems.problem(500, "internal error (the server log has the details)", kind="internal")
