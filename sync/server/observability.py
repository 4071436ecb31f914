"""Around every request: the rate limit, the server's metrics and one access-log line.

The access log is one JSON object per line on stderr: time, client address, method, path (never
the query string), status, bytes, duration, and the route group. Never a header, a body or a
token. /healthz and /metrics answer here too.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, UTC

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync import logs, metrics as store_metrics
from sync.errors import CertsyncError
from sync.server import problems, tls
from sync.server.state import ServerState

log = logging.getLogger("certsync.server")
ROUTE_GROUPS = (
    "/healthz",
    "/metrics",
    "/crl",
    "/ocsp",
    "/.well-known/est",
    "/acme",
    "/api/v1",
    "/openapi.json",
    "/dashboard",
)


def route_group(path: str) -> str:
    return next((g for g in ROUTE_GROUPS if path == g or path.startswith(g + "/")), "other")


class Observe:
    """ASGI middleware: rate limit (429 + Retry-After), metrics, access log."""

    def __init__(self, app, state: ServerState, *, log=sys.stderr) -> None:
        self.app, self.state, self.log = app, state, log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        started = time.perf_counter()
        group = route_group(scope["path"])
        address = tls.peer_address(request, self.state.server.trusted_proxies)
        sent = {"status": 500, "bytes": 0}

        async def counting_send(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        wait = (
            None
            if group in ("/healthz", "/metrics")
            else self.state.limiter.allow(self.state.limiter.key(request.headers.get("authorization"), address))
        )
        try:
            if wait is not None:
                response = problems.problem(
                    429,
                    f"rate limit of {self.state.server.rate_limit} requests a minute exceeded",
                    kind="rate-limited",
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
                await response(scope, receive, counting_send)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            elapsed = time.perf_counter() - started
            self.state.metrics.requests.labels(group, scope["method"], str(sent["status"])).inc()
            self.state.metrics.latency.labels(group).observe(elapsed)
            if self.state.server.access_log:
                self._write(
                    {
                        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                        "event": "http.request",
                        "client": address,
                        "method": scope["method"],
                        "path": scope["path"][:512],
                        "route": group,
                        "status": sent["status"],
                        "bytes": sent["bytes"],
                        "ms": round(elapsed * 1000, 1),
                    }
                )

    def _write(self, line: dict) -> None:
        try:
            self.log.write(json.dumps(line) + "\n")
            self.log.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not fail the request


def healthz(state: ServerState):
    def endpoint(request: Request) -> Response:
        try:
            with state.transaction() as tx:
                tx.settings.get("verifier")
        except CertsyncError as exc:  # unauthenticated: say that, not why (the log has the error)
            log.warning("healthz: store unavailable: %s", logs.redact(exc.message))
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return endpoint


def metrics(state: ServerState):
    async def endpoint(request: Request) -> Response:
        if not state.server.metrics_public:
            from sync.server.auth import authenticate

            try:
                await run_in_threadpool(authenticate, state, request, "read", protocol="metrics")
            except CertsyncError as exc:
                return problems.from_error(exc)
        facts = await run_in_threadpool(state.app.facts)  # the store's facts: no cloud call
        body = generate_latest(state.metrics.registry) + store_metrics.render(facts).encode()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return endpoint
