"""What every ACME request goes through: the profile's directory must exist, the body is a JWS
whose url, nonce and signature are checked, and every answer carries a fresh Replay-Nonce and
the directory's Link. Handlers are synchronous (the store is), run in the thread pool."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Callable
from urllib.parse import urlsplit

import josepy
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync.errors import CertsyncError, PayloadTooLarge, StoreError, UsageError
from sync.server import tls
from sync.server.bodies import read_limited
from sync.server.acme import jws as jose
from sync.server.acme.errors import AcmeError
from sync.server.state import ServerState
from sync.store import Transaction

log = logging.getLogger("certsync.server.acme")

MAX_BODY = 64 * 1024
JOSE = "application/jose+json"


@dataclass
class Reply:
    body: dict | bytes | None = None
    status: int = 200
    headers: dict = field(default_factory=dict)
    media_type: str = "application/json"


@dataclass
class Caller:
    """Who signed a request: an account (kid) or a bare key (jwk: newAccount, revokeCert by key)."""

    key: josepy.JWK
    account_id: str | None = None


class Ctx:
    """One request: the profile, the URLs, the JWS once read."""

    def __init__(self, state: ServerState, request: Request, profile: str, body: bytes) -> None:
        self.state = state
        self.config = state.server.acme
        self.request = request
        self.profile = profile
        self.body = body
        base = state.server.public_url or f"{request.url.scheme}://{request.url.netloc}"
        self.prefix = f"{base}/acme/{profile}"
        self.url = base + request.url.path
        self.jws: jose.Jws | None = None
        self.caller: Caller | None = None

    @property
    def now(self):
        return self.state.now

    @property
    def remote(self) -> str:
        return tls.peer_address(self.request, self.state.server.trusted_proxies)

    def link(self, kind: str, *parts: str) -> str:
        return "/".join((self.prefix, kind, *parts))

    # -- the signed request ----------------------------------------------------------------------------
    def signed(self, *, use_jwk: bool | None = False) -> jose.Jws:
        """The request's JWS, checked: header, nonce (used up, on any replica), signature."""
        if self.request.headers.get("content-type", "").split(";")[0].strip().lower() != JOSE:
            raise AcmeError("malformed", f"Content-Type must be {JOSE}", status=415)
        found = jose.parse(self.body)
        jose.check_header(found, self.url, use_jwk=use_jwk)
        nonce = found.protected.get("nonce")
        with self.state.transaction() as tx:
            fresh = isinstance(nonce, str) and tx.acme.use_nonce(nonce, self.now)
        if not fresh:
            raise AcmeError("badNonce", "the nonce is unknown, used or expired: get a new one")
        if found.kid is not None:
            account_id = self.account_id_from(found.kid)
            with self.state.transaction() as tx:
                account = tx.acme.account(account_id)
                if account is None or account.profile != self.profile:
                    raise AcmeError("accountDoesNotExist", "no such account in this directory")
                if account.status != "valid":
                    raise AcmeError("unauthorized", f"the account is {account.status}")
                key = jose.load_jwk(account.jwk)
            self.caller = Caller(key, account_id)
        else:
            key = jose.load_jwk(found.jwk)
            self.caller = Caller(key)
        jose.verify(found, key)
        self.jws = found
        return found

    def account_id_from(self, kid: str) -> str:
        """The account id in a kid URL of this profile's directory. The host is not compared:
        replicas behind different names serve the same accounts."""
        try:
            path = urlsplit(kid).path
        except ValueError:
            raise AcmeError("malformed", "kid: not a URL") from None
        head, _, account_id = path.rpartition("/")
        if head != f"/acme/{self.profile}/acct" or not account_id:
            raise AcmeError("accountDoesNotExist", "kid is not an account URL of this directory")
        return account_id

    def account(self) -> str:
        assert self.caller is not None and self.caller.account_id is not None
        return self.caller.account_id


def endpoint(state: ServerState, handler: Callable[[Ctx], Reply], *, methods: str = "POST"):
    """An ASGI endpoint around a synchronous handler: directory check, errors as ACME problems,
    Replay-Nonce and Link on every answer."""

    async def serve(request: Request) -> Response:
        profile = request.path_params["profile"]
        if profile not in state.server.acme.profiles or profile not in state.config.profile:
            return AcmeError("malformed", f"no ACME directory for profile {profile!r}", status=404).response()
        try:
            body = await read_limited(request, MAX_BODY)
        except PayloadTooLarge:
            return AcmeError("malformed", "request body too large", status=413).response()
        ctx = Ctx(state, request, profile, body)
        return await run_in_threadpool(answer, ctx, handler)

    return serve


def answer(ctx: Ctx, handler: Callable[[Ctx], Reply]) -> Response:
    try:
        reply = handler(ctx)
        response: Response = (
            JSONResponse(reply.body, reply.status, media_type=reply.media_type)
            if isinstance(reply.body, dict)
            else Response(reply.body, reply.status, media_type=reply.media_type)
        )
        response.headers.update(reply.headers)
    except AcmeError as exc:
        response = _denied(ctx, exc).response()
    except CertsyncError as exc:
        response = _from_certsync(exc).response()
    try:
        with ctx.state.transaction() as tx:
            response.headers["Replay-Nonce"] = tx.acme.new_nonce(ctx.now, ctx.config.nonce_lifetime)
    except StoreError:
        pass  # the answer itself says what is wrong
    response.headers["Cache-Control"] = "no-store"
    response.headers.append("Link", f'<{ctx.prefix}/directory>;rel="index"')
    return response


def _denied(ctx: Ctx, exc: AcmeError) -> AcmeError:
    if exc.status in (401, 403) or exc.kind in ("unauthorized", "badNonce", "externalAccountRequired"):
        ctx.state.metrics.denied.labels("acme").inc()
    return exc


def _from_certsync(exc: CertsyncError) -> AcmeError:
    if isinstance(exc, StoreError):
        log.error("acme: store error: %s", exc.message)
        return AcmeError("serverInternal", "the store is unavailable, try again", status=503)
    if isinstance(exc, UsageError):
        return AcmeError("malformed", exc.message)
    log.error("acme: %s", exc.message)
    return AcmeError("serverInternal", exc.message)


def new_nonce_reply(ctx: Ctx) -> Reply:
    """HEAD: 200, GET: 204 (RFC 8555 7.2); the nonce is added like on every answer."""
    return Reply(None, 200 if ctx.request.method == "HEAD" else 204)


def owned(ctx: Ctx, account_id: str) -> None:
    if account_id != ctx.account():
        raise AcmeError("unauthorized", "this resource belongs to another account")


def audit(
    ctx: Ctx,
    tx: Transaction,
    action: str,
    *,
    certificate: str | None = None,
    serial: str | None = None,
    outcome: str = "ok",
    detail: dict | None = None,
    actor: str | None = None,
) -> None:
    tx.audit.record(
        at=ctx.now,
        actor=actor or f"acme:{ctx.caller.account_id if ctx.caller else '?'}",
        action=action,
        protocol="acme",
        outcome=outcome,
        certificate=certificate,
        serial=serial,
        remote_addr=ctx.remote,
        detail={"profile": ctx.profile, **(detail or {})},
    )
