"""The REST endpoints' work: each reads or writes the store in one transaction, only ever for
certificates of the token's profile. A certificate of another profile answers 404, exactly like
a name that does not exist, so that a token cannot learn the names of other profiles.

Every issue, sign, renew and revoke is audited (protocol "api", the token as actor, the client
address), whether it succeeded or was refused; the private key of an issuance is never recorded.
"""

from __future__ import annotations

from typing import TypeVar
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sync.ca import issue as issuing, revoke as revocations
from sync.errors import CertsyncError, NotFound, PolicyError, UsageError
from sync.durations import parse_duration
from sync.server import tls
from sync.server.api import models
from sync.server.api.http import Conflict, json_response, query, read_json
from sync.server.auth import Principal
from sync.server.state import ServerState
from sync.store import Certificate, Transaction

T = TypeVar("T")
PEM_CHAIN = "application/pem-certificate-chain"
NO_STORE = {"Cache-Control": "no-store"}


def _pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def facts(row: Certificate) -> models.Certificate:
    return models.Certificate(
        name=row.name,
        version=row.version,
        serial=row.serial,
        state=row.state,
        not_before=row.not_before,
        not_after=row.not_after,
        common_name=row.common_name,
        sans=list(row.sans or []),
        key_type=row.key_type,
        profile=row.profile,
        source=row.source,
        ca=row.authority.name,
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
    )


def chain(tx: Transaction, row: Certificate) -> tuple[str, str]:
    """(leaf PEM, leaf + intermediates PEM): certificates only, whatever the store holds."""
    leaf = _pem(tx.certificates.checked(row))
    intermediates, _root = tx.authorities.checked_chain(row.authority)
    return leaf, leaf + "".join(_pem(c) for c in intermediates)


E = TypeVar("E", bound=models.Enrolled)


def enrolled(tx: Transaction, row: Certificate, cls: type[E], **extra) -> E:
    leaf, full = chain(tx, row)
    return cls(certificate=facts(row), certificate_pem=leaf, chain_pem=full, **extra)


def versions(tx: Transaction, principal: Principal, name: str) -> list[Certificate]:
    """The certificate's versions (newest first) if it is the token's profile's; else NotFound."""
    found = tx.certificates.versions_of(name) if models.valid_name(name) else []
    if not found or found[0].profile != principal.profile:
        raise NotFound(f"no certificate {name!r}")
    return found


def current(found: list[Certificate]) -> Certificate:
    return next((v for v in found if v.state == "active"), found[0])


def taken_elsewhere(tx: Transaction, principal: Principal) -> Callable[[str], None]:
    """For issue_from_csr: a name held by another profile is not the token's to add versions to."""

    def check(name: str) -> None:
        existing = tx.certificates.versions_of(name)
        if existing and existing[0].profile != principal.profile:
            raise PolicyError(f"name {name!r} is taken; choose another name")

    return check


# -- the audit trail -----------------------------------------------------------------------------------
def audited(
    state: ServerState,
    request: Request,
    principal: Principal,
    action: str,
    name: str | None,
    work: Callable[[Transaction], tuple[T, Certificate]],
) -> T:
    """Run `work` in a serialized transaction and record the action in it; a refusal is recorded
    in a transaction of its own (the work's was rolled back) and raised."""
    address = tls.peer_address(request, state.server.trusted_proxies)
    try:
        with state.transaction(serialized=True) as tx:
            result, row = work(tx)
            tx.audit.record(
                at=state.now,
                actor=principal.actor,
                action=action,
                protocol="api",
                certificate=row.name,
                serial=row.serial,
                remote_addr=address,
                detail={"profile": principal.profile, "version": row.version},
            )
            return result
    except CertsyncError as exc:
        refused(state, request, principal, action, name, exc)
        raise


def refused(
    state: ServerState, request: Request, principal: Principal, action: str, name: str | None, exc: CertsyncError
) -> None:
    with state.transaction() as tx:
        tx.audit.record(
            at=state.now,
            actor=principal.actor,
            action=action,
            protocol="api",
            outcome="refused",
            certificate=name,
            remote_addr=tls.peer_address(request, state.server.trusted_proxies),
            detail={"reason": exc.message},
        )


# -- reading ---------------------------------------------------------------------------------------------
def list_certificates(state: ServerState):
    async def handler(request: Request, principal: Principal) -> Response:
        params = query(request, models.ListQuery)

        def work() -> models.CertificateList:
            expiring = state.now + parse_duration(params.expiring_within) if params.expiring_within else None
            with state.transaction() as tx:
                rows = tx.certificates.latest_page(
                    principal.profile or "",
                    after=params.cursor,
                    limit=params.limit + 1,
                    state=params.state,
                    expiring_before=expiring,
                )
                more = len(rows) > params.limit
                rows = rows[: params.limit]
                return models.CertificateList(
                    items=[facts(r) for r in rows], next_cursor=rows[-1].name if more else None
                )

        return json_response(await run_in_threadpool(work))

    return handler


def get_certificate(state: ServerState):
    async def handler(request: Request, principal: Principal) -> Response:
        def work() -> models.CertificateDetail:
            with state.transaction() as tx:
                found = versions(tx, principal, request.path_params["name"])
                return models.CertificateDetail(
                    certificate=facts(current(found)),
                    versions=[
                        models.Version(
                            version=v.version,
                            serial=v.serial,
                            state=v.state,
                            not_before=v.not_before,
                            not_after=v.not_after,
                            revoked_at=v.revoked_at,
                            revocation_reason=v.revocation_reason,
                        )
                        for v in found
                    ],
                )

        return json_response(await run_in_threadpool(work))

    return handler


def get_chain(state: ServerState):
    async def handler(request: Request, principal: Principal) -> Response:
        def work() -> str:
            with state.transaction() as tx:
                return chain(tx, current(versions(tx, principal, request.path_params["name"])))[1]

        return Response(await run_in_threadpool(work), media_type=PEM_CHAIN)

    return handler


# -- writing ---------------------------------------------------------------------------------------------
def _location(name: str) -> dict[str, str]:
    return {"Location": f"/api/v1/certificates/{name}"}


def issue(state: ServerState):
    async def handler(request: Request, principal: Principal) -> Response:
        body = await read_json(request, models.IssueRequest)

        try:  # the key is made before the (serialized) transaction
            key, csr = await run_in_threadpool(
                issuing.new_key_request,
                state.config,
                principal.profile or "",
                common_name=body.common_name,
                dns_names=body.dns_names,
                ip_addresses=body.ip_addresses,
                key_type=body.key_type,
            )
        except CertsyncError as exc:
            await run_in_threadpool(refused, state, request, principal, "issue", body.name, exc)
            raise

        def work(tx: Transaction) -> tuple[models.Issued, Certificate]:
            row = issuing.issue_from_csr(
                state.config,
                tx,
                body.name,
                principal.profile or "",
                csr,
                state.now,
                check_name=taken_elsewhere(tx, principal),
            )
            key_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            return enrolled(tx, row, models.Issued, private_key_pem=key_pem), row

        result = await run_in_threadpool(audited, state, request, principal, "issue", body.name, work)
        state.enrolled("api", result.certificate.name, principal.profile or "")
        return json_response(result, 201, {**NO_STORE, **_location(result.certificate.name)})

    return handler


def sign(state: ServerState):
    async def handler(request: Request, principal: Principal) -> Response:
        body = await read_json(request, models.SignRequest)

        def work(tx: Transaction) -> tuple[models.Enrolled, Certificate]:
            row = issuing.issue_from_csr(
                state.config,
                tx,
                body.name,
                principal.profile or "",
                body.csr.encode(),
                state.now,
                check_name=taken_elsewhere(tx, principal),
            )
            return enrolled(tx, row, models.Enrolled), row

        result = await run_in_threadpool(audited, state, request, principal, "sign", body.name, work)
        state.enrolled("api", result.certificate.name, principal.profile or "")
        return json_response(result, 201, _location(result.certificate.name))

    return handler


def renew(state: ServerState):
    async def handler(request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        body = await read_json(request, models.RenewRequest)
        with state.transaction() as tx:
            source = versions(tx, principal, name)[0].source
        if source == "csr":
            if body.csr is None or body.reuse_key is not None:
                raise Conflict(f"{name!r} was enrolled from a CSR: renew it with a new CSR (csr) for the same names")
            csr = body.csr.encode()

            def work(tx: Transaction) -> tuple[models.Renewed, Certificate]:
                row = issuing.renew_from_csr(state.config, tx, name, csr, state.now)
                return enrolled(tx, row, models.Renewed), row

            result = await run_in_threadpool(audited, state, request, principal, "renew", name, work)
        else:
            if body.csr is not None:
                raise Conflict(
                    f"certsync holds the key of {name!r}: renew it with reuse_key (true or false), not a CSR"
                )
            result = await run_in_threadpool(_renew_held, state, request, principal, name, body.reuse_key)
        if source == "csr":
            state.enrolled("api", result.certificate.name, principal.profile or "")
        else:  # a configured certificate: App.renew pushed it to its own destinations
            state.metrics.issued.labels("api").inc()
        return json_response(result, 200, NO_STORE)

    return handler


def _renew_held(
    state: ServerState, request: Request, principal: Principal, name: str, reuse_key: bool | None
) -> models.Renewed:
    """A configured certificate: App.renew (under the run lock: LockError -> 503), then its pushes."""
    with state.transaction() as tx:
        versions(tx, principal, name)  # the profile check, before anything is renewed
    if name not in state.config.certificate:
        raise NotFound(f"no certificate {name!r}")
    try:
        report = state.app.renew(name, reuse_key=reuse_key)
    except CertsyncError as exc:
        refused(state, request, principal, "renew", name, exc)
        raise

    def work(tx: Transaction) -> tuple[models.Renewed, Certificate]:
        failed = [r for r in report.results if r.action.destination is None and r.error]
        if failed:
            raise Conflict(f"renewal of {name!r} failed: {failed[0].error}")
        row = current(versions(tx, principal, name))
        pushes = [
            models.Pushed(destination=r.action.destination, status=str(r.status), error=r.error)
            for r in report.results
            if r.action.destination is not None
        ]
        return enrolled(tx, row, models.Renewed, pushes=pushes), row

    return audited(state, request, principal, "renew", name, work)


def revoke(state: ServerState):
    async def handler(request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        body = await read_json(request, models.RevokeRequest)

        def work(tx: Transaction) -> tuple[models.Revoked, Certificate]:
            versions(tx, principal, name)
            now = state.now
            try:
                row, others = revocations.revoke(state.config, tx, name, body.reason, now, serial=body.serial)
            except UsageError as exc:  # already revoked, no such serial, nothing active: its state
                raise Conflict(exc.message) from None
            return models.Revoked(
                certificate=name,
                serial=row.serial,
                reason=row.revocation_reason or body.reason,
                revoked_at=now,
                ca=row.authority.name,
                crl_number=row.authority.crl_number,
                also_revoked=[
                    models.AlsoRevoked(certificate=o.name, version=o.version, serial=o.serial, ca=o.authority.name)
                    for o in others
                ],
            ), row

        return json_response(await run_in_threadpool(audited, state, request, principal, "revoke", name, work))

    return handler


def report_deployment(state: ServerState):
    """An agent's report about a version on its host: audited as `deploy` (outcome ok for
    deployed, failed otherwise), with the host and, for a failure, its one-line reason."""

    async def handler(request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        body = await read_json(request, models.DeploymentReport)
        serial = body.serial.lower().removeprefix("0x").lstrip("0") or "0"

        def work() -> models.Deployment:
            now = state.now
            with state.transaction() as tx:
                row = next(
                    (v for v in versions(tx, principal, name) if v.serial.lstrip("0") == serial.lstrip("0")), None
                )
                if row is None:  # content the schema cannot judge: 400, as for a CSR
                    raise UsageError(f"serial: certificate {name!r} has no version with serial {serial}")
                detail = {
                    "profile": principal.profile,
                    "version": row.version,
                    "host": body.host,
                    "outcome": body.outcome,
                }
                if body.detail:
                    detail["detail"] = " ".join(body.detail.split())
                tx.audit.record(
                    at=now,
                    actor=principal.actor,
                    action="deploy",
                    protocol="api",
                    outcome="ok" if body.outcome == "deployed" else "failed",
                    certificate=row.name,
                    serial=row.serial,
                    remote_addr=tls.peer_address(request, state.server.trusted_proxies),
                    detail=detail,
                )
                return models.Deployment(
                    certificate=row.name,
                    version=row.version,
                    serial=row.serial,
                    host=body.host,
                    outcome=body.outcome,
                    recorded_at=now,
                )

        return json_response(await run_in_threadpool(work))  # 200: a record, not a resource of its own

    return handler
