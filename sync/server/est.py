"""EST, Enrollment over Secure Transport (RFC 7030, with RFC 8951's clarifications).

    GET  /.well-known/est[/{label}]/cacerts         the profile's CA chain, certs-only PKCS#7 (no auth)
    GET  /.well-known/est[/{label}]/csrattrs        CsrAttrs: the key types and signature algorithms
    POST /.well-known/est[/{label}]/simpleenroll    a CSR, authenticated by a token (scope sign)
    POST /.well-known/est[/{label}]/simplereenroll  a CSR, authenticated by the certificate it renews (mTLS)
    POST /.well-known/est[/{label}]/serverkeygen    key made here, returned once (token, scope issue)

The label is a certsync profile listed in [server.est]; the unlabelled URLs use its default_profile.
Policy is the profile's, exactly as for `certsync sign` (sync.ca.issue.issue_from_csr).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sync.errors import AuthError, CertsyncError, ConfigError, NotFound, PayloadTooLarge
from sync.pki import est as encoding
from sync.server import est_enroll, problems
from sync.server.state import ServerState

PREFIX = "/.well-known/est"
MAX_BODY = 64 * 1024  # a CSR is a few KiB; more is not one
PKCS7_CERTS = "application/pkcs7-mime; smime-type=certs-only"
CHALLENGE = 'Basic realm="certsync EST"'

Handler = Callable[[ServerState, Request, str, bytes], Response]


def routes(state: ServerState) -> list[BaseRoute]:
    served = state.server.est.served()
    unknown = [p for p in served if p not in state.config.profile]
    if unknown:
        raise ConfigError(
            f"server.est: unknown profile {unknown[0]!r} (defined: {', '.join(sorted(state.config.profile)) or 'none'})"
        )
    if not served:
        return []  # EST off: its URLs answer 404
    operations: dict[str, tuple[str, Handler, bool]] = {
        "cacerts": ("GET", cacerts, False),
        "csrattrs": ("GET", csrattrs, False),
        "simpleenroll": ("POST", est_enroll.simpleenroll, True),
        "simplereenroll": ("POST", est_enroll.simplereenroll, True),
        "serverkeygen": ("POST", est_enroll.serverkeygen, True),
    }
    result: list[BaseRoute] = []
    for name, (method, handler, has_body) in operations.items():
        endpoint = _endpoint(state, handler, has_body)
        result += [
            Route(f"{PREFIX}/{name}", endpoint, methods=[method]),
            Route(f"{PREFIX}/{{label}}/{name}", endpoint, methods=[method]),
        ]
    return result


def _endpoint(state: ServerState, handler: Handler, has_body: bool):
    async def endpoint(request: Request) -> Response:
        try:
            profile = _profile(state, request.path_params.get("label"))
            body = b""
            if has_body:
                if _media_type(request) not in ("application/pkcs10", ""):
                    return problems.problem(
                        415, "send the CSR as application/pkcs10 (base64 DER)", kind="unsupported-media-type"
                    )
                body = await _read(request)
            return await run_in_threadpool(handler, state, request, profile, body)
        except CertsyncError as exc:
            return error(exc)

    return endpoint


def error(exc: CertsyncError) -> Response:
    """The problem document, with EST's HTTP Basic challenge on a 401 (RFC 7030 3.2.3)."""
    response = problems.from_error(exc)
    if isinstance(exc, AuthError):
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


def _profile(state: ServerState, label: str | None) -> str:
    est = state.server.est
    if label is None:
        if est.default_profile is None:
            raise NotFound("EST has no default profile here: use /.well-known/est/PROFILE/")
        return est.default_profile
    if label not in est.served():
        raise NotFound(f"no EST label {label!r}")
    return label


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"the request is larger than {MAX_BODY // 1024} KiB")
    return body


def base64_response(der: bytes, media_type: str) -> Response:
    return Response(encoding.encode(der), media_type=media_type, headers={"Content-Transfer-Encoding": "base64"})


# -- the unauthenticated operations ------------------------------------------------------------------------
def cacerts(state: ServerState, request: Request, profile: str, body: bytes) -> Response:
    """RFC 7030 4.1: the issuing CA and its chain up to the root."""
    ca = state.config.profile[profile].ca
    with state.transaction() as tx:
        authority = tx.authorities.active(ca)
        if authority is None:
            raise NotFound(f"CA {ca!r} of profile {profile!r} is not initialised (run `certsync init`)")
        intermediates, root = tx.authorities.checked_chain(authority)
    return base64_response(encoding.certs_only([*intermediates, root]), "application/pkcs7-mime")


def csrattrs(state: ServerState, request: Request, profile: str, body: bytes) -> Response:
    """RFC 7030 4.5: the key types the profile accepts and the signature algorithm for each."""
    spec = state.config.profile[profile]
    return base64_response(encoding.csr_attributes(spec.allowed_keys or [spec.key]), "application/csrattrs")
