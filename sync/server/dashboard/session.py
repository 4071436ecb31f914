"""Who reads the dashboard. Browsers cannot send a bearer header, so a user signs in by pasting a
token with the `read` scope into a form; the answer is a cookie holding that token (HttpOnly,
SameSite=Strict, Secure under TLS, Path=/dashboard) which every later request presents and which
is checked exactly like a bearer token (`auth.check_secret`: revoked, expired, scope; audited).
Nothing is kept on the server, so any replica accepts it, and revoking the token ends the session.

A client certificate listed in `[server] dashboard_clients` is let in without a token (mTLS);
a bearer header works too (scripts, curl).
"""

from __future__ import annotations

from starlette.requests import Request

from sync.errors import AuthError
from sync.server import auth
from sync.server.auth import Principal
from sync.server.state import ServerState

COOKIE = "certsync_dashboard"
PATH = "/dashboard"
MAX_AGE = 8 * 3600  # a working day; the token's own expiry and revocation apply on every request
SCOPE = "read"


def principal(state: ServerState, request: Request) -> Principal:
    """The reader behind `request` (AuthError 401 / Forbidden 403 otherwise). Runs in a thread."""
    cert = auth.client_certificate(state, request)
    if cert is not None and cert.subject.rfc4514_string() in state.server.dashboard_clients:
        return Principal("certificate", cert.subject.rfc4514_string(), None, frozenset({SCOPE}))
    secret = request.cookies.get(COOKIE)
    given = (None, secret) if secret else auth.credentials(request)
    if given is None:
        raise AuthError("sign in with a token that has the read scope")
    return auth.check_secret(state, request, given, SCOPE, protocol="dashboard")


def sign_in(state: ServerState, request: Request, secret: str) -> Principal:
    """Check a pasted token before it becomes the session cookie (a refusal is audited as any)."""
    if not secret:
        raise AuthError("paste a token")
    return auth.check_secret(state, request, (None, secret), SCOPE, protocol="dashboard")


def cookie_options(state: ServerState, request: Request) -> dict:
    """Secure whenever the browser reaches us over TLS (ours, or a terminating proxy's)."""
    secure = request.url.scheme == "https" or state.server.plain_http
    return {"key": COOKIE, "path": PATH, "httponly": True, "samesite": "strict", "secure": secure}


def same_origin(request: Request) -> bool:
    """A form POST from our own pages (SameSite does the rest): Origin, when sent, names this host."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
