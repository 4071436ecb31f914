"""Orders, authorizations, challenges, finalize and certificate download (RFC 8555 7.1.3-7.5,
7.4.2). Names are checked against the profile when the order is made (rejectedIdentifier), and
the CSR at finalize exactly as `certsync sign` checks it, its names equal to the order's."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from sync.ca.hierarchy import check_name_constraints
from sync.ca.issue import issue_from_csr
from sync.errors import CertsyncError, UsageError
from sync.pki import csr as csr_checks, names, policy
from sync.server import enroll_names
from sync.server.acme import jws as jose
from sync.server.acme.errors import AcmeError
from sync.server.acme.service import Ctx, Reply, audit, owned
from sync.server.acme.validation import validate
from sync.store import Transaction

MAX_IDENTIFIERS = 100
PEM_CHAIN = "application/pem-certificate-chain"


def _time(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- views -------------------------------------------------------------------------------------------
def refresh(ctx: Ctx, tx: Transaction, order) -> list:
    """Bring an order's (and its authorizations') status up to date; returns the authorizations."""
    now = ctx.now
    authzs = tx.acme.authorizations(order.id)
    for authz in authzs:
        if authz.status in ("pending", "valid") and now >= authz.expires_at:
            authz.status = "expired"
    if order.status in ("pending", "ready") and now >= order.expires_at:
        order.status = "invalid"
    elif order.status == "pending":
        if any(a.status in ("invalid", "deactivated", "expired", "revoked") for a in authzs):
            order.status = "invalid"
        elif all(a.status == "valid" for a in authzs):
            order.status = "ready"
    return authzs


def order_view(ctx: Ctx, order, authzs: list) -> dict:
    view = {
        "status": order.status,
        "expires": _time(order.expires_at),
        "identifiers": [{"type": "dns", "value": name} for name in order.identifiers],
        "authorizations": [ctx.link("authz", a.id) for a in authzs],
        "finalize": ctx.link("order", order.id, "finalize"),
    }
    if order.certificate_serial:
        view["certificate"] = ctx.link("cert", order.id)
    if order.error:
        view["error"] = order.error
    return view


def challenge_view(ctx: Ctx, challenge) -> dict:
    view = {
        "type": challenge.type,
        "url": ctx.link("chall", challenge.id),
        "status": challenge.status,
        "token": challenge.token,
    }
    if challenge.validated_at is not None:
        view["validated"] = _time(challenge.validated_at)
    if challenge.error:
        view["error"] = challenge.error
    return view


def authz_view(ctx: Ctx, tx: Transaction, authz) -> dict:
    view = {
        "identifier": {"type": "dns", "value": authz.identifier},
        "status": authz.status,
        "expires": _time(authz.expires_at),
        "challenges": [challenge_view(ctx, c) for c in tx.acme.challenges(authz.id)],
    }
    if authz.wildcard:
        view["wildcard"] = True
    return view


# -- new order -----------------------------------------------------------------------------------------
def new_order(ctx: Ctx) -> Reply:
    payload = ctx.signed().json()
    if "notBefore" in payload or "notAfter" in payload:
        raise AcmeError("malformed", "notBefore/notAfter are not supported: the profile sets the validity")
    identifiers = _identifiers(ctx, payload.get("identifiers"))
    with ctx.state.transaction(serialized=True) as tx:
        order = tx.acme.add_order(
            account_id=ctx.account(),
            profile=ctx.profile,
            identifiers=identifiers,
            expires_at=ctx.now + ctx.config.order_lifetime,
            now=ctx.now,
        )
        authzs = tx.acme.authorizations(order.id)
        return Reply(order_view(ctx, order, authzs), 201, {"Location": ctx.link("order", order.id)})


def _identifiers(ctx: Ctx, given: object) -> list[str]:
    if not isinstance(given, list) or not given or len(given) > MAX_IDENTIFIERS:
        raise AcmeError("malformed", f"identifiers: a list of 1 to {MAX_IDENTIFIERS} identifiers")
    found: list[str] = []
    for item in given:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise AcmeError("malformed", 'identifiers: each is {"type": "dns", "value": NAME}')
        if item.get("type") != "dns":
            raise AcmeError("unsupportedIdentifier", f"identifier type {item.get('type')!r}: only dns is supported")
        name = item["value"].lower().rstrip(".")
        if name not in found:
            found.append(name)
    profile = ctx.state.config.profile[ctx.profile]
    key_type = (profile.allowed_keys or [profile.key])[0]  # names only here; the CSR's key is checked later
    for name in found:
        if not csr_checks._is_dns_name(name.removeprefix("*.")):
            raise AcmeError("rejectedIdentifier", f"{name!r} is not a DNS name")
        try:
            policy.check_request(
                ctx.profile, profile, dns_names=[name], ip_addresses=[], key_type=key_type, validity=profile.validity
            )
            check_name_constraints(ctx.state.config, profile.ca, [name], [])
        except CertsyncError as exc:
            raise AcmeError("rejectedIdentifier", exc.message) from None
    return found


# -- reading ---------------------------------------------------------------------------------------------
def get_order(ctx: Ctx) -> Reply:
    ctx.signed()
    with ctx.state.transaction() as tx:
        order = _order(ctx, tx, ctx.request.path_params["id"])
        authzs = refresh(ctx, tx, order)
        return Reply(order_view(ctx, order, authzs))


def _order(ctx: Ctx, tx: Transaction, order_id: str, *, for_update: bool = False):
    order = tx.acme.order(order_id, for_update=for_update)
    if order is None or order.profile != ctx.profile:
        raise AcmeError("malformed", "no such order", status=404)
    owned(ctx, order.account_id)
    return order


def _authz(ctx: Ctx, tx: Transaction, authz_id: str, *, for_update: bool = False):
    authz = tx.acme.authorization(authz_id, for_update=for_update)
    order = tx.acme.order(authz.order_id) if authz is not None else None
    if authz is None or order is None or order.profile != ctx.profile:
        raise AcmeError("malformed", "no such authorization", status=404)
    owned(ctx, order.account_id)
    return authz, order


def get_authz(ctx: Ctx) -> Reply:
    signed = ctx.signed()
    payload = {} if signed.post_as_get else signed.json()
    with ctx.state.transaction(serialized=True) as tx:
        authz, order = _authz(ctx, tx, ctx.request.path_params["id"], for_update=True)
        if payload.get("status") == "deactivated":
            if authz.status not in ("pending", "valid"):
                raise AcmeError("malformed", f"the authorization is {authz.status}")
            authz.status = "deactivated"
        elif payload:
            raise AcmeError("malformed", 'an authorization accepts only {"status": "deactivated"}')
        refresh(ctx, tx, order)
        return Reply(authz_view(ctx, tx, authz))


# -- challenges --------------------------------------------------------------------------------------------
def challenge(ctx: Ctx) -> Reply:
    """POST {} starts validation (done here, synchronously: clients poll anyway); POST-as-GET reads."""
    signed = ctx.signed()
    challenge_id = ctx.request.path_params["id"]
    start = not signed.post_as_get
    if start and signed.json():
        raise AcmeError("malformed", "a challenge response is the empty object {}")
    with ctx.state.transaction(serialized=True) as tx:
        found = tx.acme.challenge(challenge_id, for_update=True)
        if found is None:
            raise AcmeError("malformed", "no such challenge", status=404)
        authz, order = _authz(ctx, tx, found.authz_id, for_update=True)
        refresh(ctx, tx, order)
        start = start and found.status == "pending" and authz.status == "pending"
        if start:
            found.status = "processing"
        job = (found.type, authz.identifier, found.token)
        view = challenge_view(ctx, found)
        up = ctx.link("authz", authz.id)
    if start:
        view = _validate(ctx, challenge_id, *job)
    return Reply(view, 200, {"Link": f'<{up}>;rel="up"'})


def _validate(ctx: Ctx, challenge_id: str, kind: str, name: str, token: str) -> dict:
    assert ctx.caller is not None
    error = None
    try:
        validate(kind, name, token, jose.thumbprint(ctx.caller.key), ctx.config)
    except AcmeError as exc:
        error = exc.document()
    with ctx.state.transaction(serialized=True) as tx:
        found = tx.acme.challenge(challenge_id, for_update=True)
        assert found is not None
        authz = tx.acme.authorization(found.authz_id, for_update=True)
        assert authz is not None
        found.status, found.error = ("invalid", error) if error else ("valid", None)
        found.validated_at = None if error else ctx.now
        if authz.status == "pending":
            authz.status = "invalid" if error else "valid"
        return challenge_view(ctx, found)


# -- finalize and the certificate ------------------------------------------------------------------------
def finalize(ctx: Ctx) -> Reply:
    payload = ctx.signed().json()
    csr_der = jose.b64decode(payload.get("csr"), "csr")
    with ctx.state.transaction(serialized=True) as tx:
        order = _order(ctx, tx, ctx.request.path_params["id"], for_update=True)
        authzs = refresh(ctx, tx, order)
        if order.status != "ready":
            raise AcmeError("orderNotReady", f"the order is {order.status}, not ready")
        _check_csr_names(ctx, order, csr_der)
        try:
            name = enroll_names.store_name(ctx.state.config, tx, ctx.profile, csr_der)
            row = issue_from_csr(ctx.state.config, tx, name, ctx.profile, csr_der, ctx.now)
        except UsageError as exc:  # PolicyError too: what `certsync sign` refuses
            raise AcmeError("badCSR", exc.message) from None
        order.status, order.certificate_serial = "valid", row.serial
        audit(
            ctx,
            tx,
            "issue",
            certificate=row.name,
            serial=row.serial,
            detail={"order": order.id, "names": list(order.identifiers)},
        )
        view = order_view(ctx, order, authzs)
    ctx.state.enrolled("acme", row.name, ctx.profile)
    return Reply(view, 200, {"Location": ctx.link("order", order.id)})


def _check_csr_names(ctx: Ctx, order, csr_der: bytes) -> None:
    try:
        request = csr_checks.check_csr(csr_checks.load_csr(csr_der), ctx.profile, ctx.state.config.profile[ctx.profile])
    except UsageError as exc:
        raise AcmeError("badCSR", exc.message) from None
    if request.ip_addresses or sorted(set(request.dns_names)) != sorted(order.identifiers):
        asked = names.san_strings(request.dns_names, request.ip_addresses)
        raise AcmeError(
            "badCSR", f"the CSR's names ({', '.join(asked)}) are not the order's ({', '.join(order.identifiers)})"
        )


def certificate(ctx: Ctx) -> Reply:
    ctx.signed()
    with ctx.state.transaction() as tx:
        order = _order(ctx, tx, ctx.request.path_params["id"])
        row = tx.certificates.by_serial(int(order.certificate_serial, 16)) if order.certificate_serial else None
        if row is None:
            raise AcmeError("malformed", "the order has no certificate", status=404)
        bundle = tx.certificates.bundle(row)
        pem = b"".join(c.public_bytes(Encoding.PEM) for c in (bundle.certificate, *bundle.intermediates))
    return Reply(pem, 200, media_type=PEM_CHAIN)
