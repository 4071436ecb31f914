"""The read-only dashboard under /dashboard/ (docs/dashboard.md): server-rendered HTML (Jinja2),
inline SVG, one small script that filters the certificates table in the browser; assets shipped in
the package. Every page needs a reader (session.py); nothing on it writes to the store except the
audit record of each token use.

    GET  /dashboard/                       overview: counts, the expiry timeline, recent activity
    GET  /dashboard/certificates           the table (?q=&profile=&ca=&state=&destination=&expiring=)
    GET  /dashboard/certificates/{name}    one certificate: chain, versions, copies, commands
    GET  /dashboard/discovery              the discovery inventory
    GET  /dashboard/activity               the audit trail
    GET|POST /dashboard/login, POST /dashboard/logout, GET /dashboard/static/{file}
"""

from __future__ import annotations

import logging
from importlib import resources
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sync.errors import AuthError, CertsyncError, Forbidden, NotFound
from sync.server.dashboard import rows, session, timeline, views
from sync.server.state import ServerState

log = logging.getLogger("certsync.server")
MAX_FORM = 8192
STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

_env = Environment(
    loader=PackageLoader("sync.server.dashboard", "templates"),
    autoescape=select_autoescape(),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["day"] = lambda at: f"{at:%Y-%m-%d}" if at else ""
_env.filters["minute"] = lambda at: f"{at:%Y-%m-%d %H:%M}" if at else ""
_env.filters["urlpart"] = lambda value: quote(value, safe="")
_env.globals["lanes"] = timeline.svg_lanes


def render(name: str, status: int = 200, **context) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status, headers=HEADERS)


def routes(state: ServerState) -> list[BaseRoute]:
    return [
        Route("/dashboard", lambda request: RedirectResponse("/dashboard/", 308), methods=["GET"]),
        Route("/dashboard/", page(state, overview_page), methods=["GET"]),
        Route("/dashboard/certificates", page(state, certificates_page), methods=["GET"]),
        Route("/dashboard/certificates/{name}", page(state, certificate_page), methods=["GET"]),
        Route("/dashboard/discovery", page(state, discovery_page), methods=["GET"]),
        Route("/dashboard/activity", page(state, activity_page), methods=["GET"]),
        Route("/dashboard/login", login(state), methods=["GET", "POST"]),
        Route("/dashboard/logout", logout(state), methods=["POST"]),
        Route("/dashboard/static/{file}", static, methods=["GET"]),
    ]


def page(state: ServerState, build):
    """A page for a reader only: without one, 401 and the sign-in form (no data); `build` runs in a
    thread (the store is synchronous) and returns (template, context)."""

    async def endpoint(request: Request) -> Response:
        try:
            reader = await run_in_threadpool(session.principal, state, request)
        except AuthError as exc:
            return login_form(
                request,
                status=401,
                error=exc.message if request.cookies.get(session.COOKIE) else None,
                next_path=request.url.path,
            )
        except Forbidden as exc:
            return render("error.html", 403, title="Forbidden", message=exc.message, reader=None)
        try:
            template, context = await run_in_threadpool(build, state, request)
        except NotFound as exc:
            return render("error.html", 404, title="Not found", message=exc.message, reader=reader)
        except CertsyncError as exc:
            log.warning("dashboard: %s", exc.message)
            return render(
                "error.html",
                503,
                title="Unavailable",
                message="the store cannot be read now; the server log says why",
                reader=reader,
            )
        return render(template, reader=reader, path=request.url.path, **context)

    return endpoint


# -- pages ---------------------------------------------------------------------------------------
def overview_page(state: ServerState, request: Request):
    found = views.overview(state)
    return "overview.html", {
        "o": found,
        "timeline": timeline.layout(_timeline_items(state, found), found.facts.now),
        "events": views.activity(state, 10),
        "now": found.facts.now,
    }


def _timeline_items(state: ServerState, found: views.Overview) -> list[timeline.Item]:
    with state.transaction() as tx:
        cas = [(name, row) for name in state.config.ca if (row := tx.authorities.active(name)) is not None]
        items = [timeline.Item(f"CA {name}", "ca", "active", row.not_before, row.not_after, None) for name, row in cas]
    certs = sorted(found.certificates, key=lambda v: v.row.not_after)
    return items + [
        timeline.Item(
            v.row.name,
            "certificate",
            v.row.state,
            v.row.not_before or v.row.not_after,
            v.row.not_after,
            v.renew_from,
            "certificates/" + quote(v.row.name, safe=""),
        )
        for v in certs
    ]


def certificates_page(state: ServerState, request: Request):
    found = views.overview(state)
    query = {
        k: v for k, v in request.query_params.items() if k in ("q", "profile", "ca", "state", "destination", "expiring")
    }
    shown = [v for v in found.certificates if views.matches(v, query)]
    limit = None if request.query_params.get("all") else views.PAGE_ROWS
    drawn = {v.row.name for v in shown[:limit]}
    hidden = {v.row.name for v in found.certificates} - drawn
    return "certificates.html", {
        "o": found,
        "shown": shown,
        "drawn": len(drawn),
        "limit": views.PAGE_ROWS,
        "rows": rows.table_rows(found.certificates, hidden),
        "all": limit is None,
        "query": query,
        "choices": views.EXPIRING_CHOICES,
        "now": found.facts.now,
    }


def certificate_page(state: ServerState, request: Request):
    found = views.detail(state, request.path_params["name"])
    return "certificate.html", {"d": found, "commands": views.commands(found), "now": found.view.row.not_after}


def discovery_page(state: ServerState, request: Request):
    found = state.app.discovered()
    for row in found:
        row["adopt"] = views.adopt_command(row) if not row["managed"] else None
    return "discovery.html", {"found": found}


def activity_page(state: ServerState, request: Request):
    return "activity.html", {"events": views.activity(state, 200)}


# -- signing in and out --------------------------------------------------------------------------
def login_form(request: Request, *, status: int = 200, error: str | None = None, next_path: str = "/dashboard/"):
    response = render("login.html", status, error=error, next_path=_safe_next(next_path), reader=None)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="certsync dashboard"'
    return response


def login(state: ServerState):
    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            return login_form(request, next_path=request.query_params.get("next", "/dashboard/"))
        if not session.same_origin(request):
            return render("error.html", 403, title="Forbidden", message="cross-site sign-in refused", reader=None)
        form = await _form(request)
        secret = (form.get("token") or "").strip()
        next_path = _safe_next(form.get("next") or "/dashboard/")
        try:
            await run_in_threadpool(session.sign_in, state, request, secret)
        except (AuthError, Forbidden) as exc:  # the message names the token at most, never its secret
            return login_form(
                request, status=401 if isinstance(exc, AuthError) else 403, error=exc.message, next_path=next_path
            )
        response = RedirectResponse(next_path, 303, headers=HEADERS)
        response.set_cookie(value=secret, max_age=session.MAX_AGE, **session.cookie_options(state, request))
        return response

    return endpoint


def logout(state: ServerState):
    async def endpoint(request: Request) -> Response:
        if not session.same_origin(request):
            return render("error.html", 403, title="Forbidden", message="cross-site sign-out refused", reader=None)
        response = RedirectResponse("/dashboard/login", 303, headers=HEADERS)
        options = session.cookie_options(state, request)
        response.delete_cookie(options.pop("key"), **options)
        return response

    return endpoint


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form of at most MAX_FORM bytes (no multipart parser needed)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    try:
        parsed = parse_qs(body.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items()}


def _safe_next(path: str) -> str:
    """Only a dashboard page: never another site, nor the login page itself."""
    if (
        not path.startswith("/dashboard/")
        or path.startswith(("/dashboard/login", "/dashboard/logout"))
        or "//" in path
        or "\\" in path
    ):
        return "/dashboard/"
    return path


async def static(request: Request) -> Response:
    name = request.path_params["file"]
    if name not in STATIC:
        return Response("not found", 404, media_type="text/plain")
    body = resources.files("sync.server.dashboard").joinpath("static", name).read_bytes()
    return Response(
        body, media_type=STATIC[name], headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"}
    )
