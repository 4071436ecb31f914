"""Who is asking: API tokens (Bearer, or HTTP Basic with the token's name as the user, for EST
clients that speak only Basic) and client certificates. Deny by default: a request names its scope
and profile, and a credential that lacks either is refused (403), a missing or unusable one 401.

Each token use is recorded in the audit trail (who, what, from where), allowed or not.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography import x509
from starlette.requests import Request

from sync.config_server import TOKEN_SCOPES
from sync.errors import AuthError, Forbidden
from sync.server import tls
from sync.server.state import ServerState

SCOPES = tuple(TOKEN_SCOPES)


@dataclass(frozen=True)
class Principal:
    kind: str  # token | certificate
    name: str  # token name, or the certificate's subject
    profile: str | None  # the profile a token is bound to
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    def require(self, scope: str, profile: str | None = None) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"{self.actor} lacks the {scope!r} scope")
        if profile is not None and self.profile is not None and profile != self.profile:
            raise Forbidden(f"{self.actor} is bound to profile {self.profile!r}, not {profile!r}")


def credentials(request: Request) -> tuple[str | None, str] | None:
    """(user or None, secret) from `Authorization: Bearer S` or `Basic base64(user:S)`; None without."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return None, value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            user, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials") from None
        if not sep:
            raise AuthError("malformed Basic credentials")
        return user, secret
    if header:
        raise AuthError("unsupported Authorization scheme (use Bearer, or Basic with the token's name and secret)")
    return None


def authenticate(
    state: ServerState, request: Request, scope: str, profile: str | None = None, *, protocol: str
) -> Principal:
    """The token behind the request, checked usable and allowed `scope` (and `profile`); the use
    recorded in the audit trail whatever the outcome. AuthError (401) / Forbidden (403)."""
    given = credentials(request)
    if given is None:
        raise AuthError("credentials required: Authorization: Bearer <token>")
    principal = check_secret(state, request, given, scope, profile, protocol=protocol)
    state.limiter.vouch(request.headers.get("authorization", ""))
    return principal


def check_secret(
    state: ServerState,
    request: Request,
    given: tuple[str | None, str],
    scope: str,
    profile: str | None = None,
    *,
    protocol: str,
) -> Principal:
    """`authenticate` for a secret however it came (header, or the dashboard's session cookie)."""
    user, secret = given
    address = tls.peer_address(request, state.server.trusted_proxies)
    now = state.now
    with state.transaction() as tx:
        row = tx.tokens.by_secret(secret)
        failure: AuthError | Forbidden | None = None
        if row is None or (user is not None and user != row.name):
            failure = AuthError("unknown token")
        elif row.revoked_at is not None:
            failure = AuthError(f"token {row.name!r} is revoked")
        elif row.expires_at is not None and row.expires_at <= now:
            failure = AuthError(f"token {row.name!r} expired")
        principal = None
        if failure is None and row is not None:
            principal = Principal("token", row.name, row.profile, frozenset(row.scopes))
            try:
                principal.require(scope, profile)
            except Forbidden as exc:
                failure = exc
            tx.tokens.touch(row, now)
        tx.audit.record(
            at=now,
            actor=f"token:{row.name}" if row is not None else "token:?",
            action="token.use",
            protocol=protocol,
            outcome="ok" if failure is None else "denied",
            remote_addr=address,
            detail={"scope": scope, "path": request.url.path, **({"reason": failure.message} if failure else {})},
        )
    if failure is not None:
        state.metrics.denied.labels(protocol).inc()
        raise failure
    assert principal is not None
    return principal


def client_certificate(state: ServerState, request: Request) -> x509.Certificate | None:
    """The request's verified client certificate (TLS session or trusted proxy header), or None."""
    roots, intermediates = state.client_trust()
    return tls.client_certificate(
        request,
        header=state.server.client_cert_header,
        trusted=state.server.trusted_proxies,
        roots=roots,
        intermediates=intermediates,
    )
