"""The library behind each CLI command: takes a Config, returns data. Nothing here prints."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable

from sync import enroll, render
from sync.apply import Report, execute, push_actions
from sync.ca import utcnow
from sync.config import Config
from sync.errors import NotFound, UsageError, one_line
from sync.plan import Action, Plan
from sync.state import Providers, snapshot
from sync.store import Store


def open_store(config: Config, *, create: bool = False) -> Store:
    store = Store(config.store_url(), create=create, lock_timeout=config.store.lock_timeout)
    key_file = config.resolve(config.store.key_file) if config.store.key_file else None
    store.unlock(key_file, create=create)
    return store


@dataclass(frozen=True)
class InitResult:
    cas: list[enroll.CAStatus]
    schema_before: str | None     # None: a new store
    schema_after: str


def init(config: Config, *, now: datetime | None = None) -> InitResult:
    store = open_store(config, create=True)     # creates the store or upgrades its schema
    with store.lock():                          # two first runs at once must not make two CAs
        cas = enroll.init_cas(config, store, now=now)
    before, after = store.schema_change
    return InitResult(cas, before, after)


def plan(config: Config, *, providers: Callable | None = None, now: datetime | None = None) -> Plan:
    store = open_store(config)
    snap = snapshot(config, store, providers or Providers(config))
    return snap.plan(now or utcnow())


def apply(config: Config, *, providers: Callable | None = None, now: datetime | None = None,
          progress=None, deadline=None) -> Report:
    """deadline: a cron.Deadline (--max-duration); once it has passed no new action starts."""
    store = open_store(config)
    providers = providers or Providers(config)
    with store.lock():
        snap = snapshot(config, store, providers)
        the_plan = snap.plan(now or utcnow())
        return execute(config, store, the_plan, providers, retired=snap.retired, now=now, progress=progress,
                       deadline=deadline)


def push(config: Config, cert: str, destinations: list[str] | None = None, *,
         providers: Callable | None = None) -> Report:
    """Push one certificate now, even if unchanged; issues it first if it was never issued.
    A CSR enrollment (not in the config) is pushed chain-only, to the destinations named."""
    _check_destinations(config, destinations)
    store = open_store(config)
    providers = providers or Providers(config)
    with store.lock():
        return execute(config, store, _push_plan(config, store, cert, destinations), providers)


def push_dry_run(config: Config, cert: str, destinations: list[str] | None = None, *,
                 providers: Callable | None = None) -> Plan:
    """What `push` would do, writing nothing: one read per target tells create, update, or a
    refusal under the ownership rules."""
    _check_destinations(config, destinations)
    store = open_store(config)
    providers = providers or Providers(config)
    the_plan = _push_plan(config, store, cert, destinations)
    checked = []
    for action in the_plan.actions:
        if action.kind == "push":
            action = _dry_push(config, providers, action)
        checked.append(action)
    return Plan(checked)


def _dry_push(config: Config, providers: Callable, action: Action) -> Action:
    try:
        remote = providers(action.destination).get(action.remote_name)
    except Exception as exc:
        return replace(action, kind="error", reason=f"cannot read the destination: {one_line(exc)}")
    if remote is None:
        return replace(action, reason="would create", exists=False)
    if not remote.managed and not config.destination[action.destination].adopt:
        return replace(action, kind="error", reason="would be refused: the secret exists and is not managed "
                                                    "by certsync (set adopt = true to take it over)")
    return replace(action, reason="would update" + ("" if remote.managed else " (adopting it)"), exists=True)


def _push_plan(config: Config, store: Store, cert: str, destinations: list[str] | None) -> Plan:
    with store.session() as session:
        row = store.current(session, cert)
        from_csr = row is not None and row.source == "csr"
    if from_csr:
        if not destinations:
            raise UsageError(f"certificate {cert!r} was enrolled from a CSR: name its destinations with --to")
        return Plan([Action("push", cert, d, cert, "one-off push") for d in destinations])
    _check_cert(config, cert)
    actions = push_actions(config, cert, destinations)
    if row is None:
        actions.insert(0, Action("issue", cert, reason="not issued yet"))
    return Plan(actions)


def renew(config: Config, cert: str, *, reuse_key: bool | None = None,
          providers: Callable | None = None) -> Report:
    """Renew now (client-driven) and push the successor to every destination of the certificate.
    reuse_key None follows the profile's key_rotation; True keeps the key, False makes a new one."""
    _check_cert(config, cert)
    store = open_store(config)
    with store.lock():
        actions = [Action("renew", cert, reason="renewal requested", reuse_key=reuse_key),
                   *push_actions(config, cert, None, reason="new certificate version")]
        return execute(config, store, Plan(actions), providers or Providers(config))


def retire(config: Config, cert: str, *, providers: Callable | None = None) -> Report:
    """Delete the certificate from every destination it was pushed to, then mark it retired.
    Its history stays in the store; a secret certsync does not own is never deleted."""
    store = open_store(config)
    with store.lock():
        with store.session() as session:
            if not store.latest_versions_of(session, cert):
                raise NotFound(f"certificate {cert!r} is not in the store")
            deployed = [(d.destination, d.remote_name) for d in store.deployments(session)
                        if d.cert_name == cert and d.state == "present"]
        unreachable = [d for d, _ in deployed if d not in config.destination]
        actions = [Action("delete", cert, dest, name, "retired") for dest, name in deployed
                   if dest not in unreachable]
        actions += [Action("error", cert, dest, name, f"destination {dest!r} is no longer in the config; "
                           "delete the remote secret by hand") for dest, name in deployed if dest in unreachable]
        return execute(config, store, Plan(actions), providers or Providers(config), retired=[cert])


@dataclass(frozen=True)
class InventoryRow:
    name: str
    state: str
    version: int
    serial: str
    not_after: datetime
    days_left: float
    in_sync: int
    destinations: int

    def as_dict(self) -> dict:
        return {"name": self.name, "state": self.state, "version": self.version, "serial": self.serial,
                "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "days_left": round(self.days_left, 1), "destinations_in_sync": self.in_sync,
                "destinations": self.destinations}


@dataclass(frozen=True)
class Inventory:
    certificates: list[InventoryRow]
    authorities: list[dict]
    warnings: list[str]


def inventory(config: Config, *, now: datetime | None = None) -> Inventory:
    """What the store knows, without calling any cloud: in sync = last push carried this version."""
    now = now or utcnow()
    store = open_store(config)
    rows = []
    with store.session() as session:
        deployed = {(d.destination, d.remote_name): d for d in store.deployments(session) if d.state == "present"}
        for cert in store.latest_versions(session):
            spec = config.certificate.get(cert.name)
            targets = spec.targets(cert.name) if spec else []
            in_sync = sum(1 for t in targets if (d := deployed.get((t.to, t.name))) and d.certificate_id == cert.id)
            rows.append(InventoryRow(cert.name, cert.state, cert.version, cert.serial, cert.not_after,
                                     (cert.not_after - now).total_seconds() / 86400, in_sync, len(targets)))
        authorities = {name: store.authority(session, name) for name in config.ca}
    cas = [{"name": name, "subject": row.subject, "generation": row.generation,
            "not_after": row.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "days_left": round((row.not_after - now).total_seconds() / 86400, 1)}
           for name, row in authorities.items() if row is not None]
    return Inventory(rows, cas, list(_ca_warnings(config, authorities, now)))


def _ca_warnings(config: Config, authorities: dict, now: datetime):
    """A CA that expires before what it would sign now: leaves get cut short (or it is expired)."""
    for name, row in authorities.items():
        if row is None:
            yield f"CA {name!r} is in the config but not in the store: run `certsync init`"
        elif row.not_after <= now:
            yield f"CA {name!r} expired on {row.not_after:%Y-%m-%d}: nothing it signs is valid"
    for profile_name, profile in config.profile.items():
        row = authorities.get(profile.ca)
        if row is not None and now < row.not_after < now + profile.validity:
            yield (f"CA {profile.ca!r} expires on {row.not_after:%Y-%m-%d}, before certificates issued now from "
                   f"profile {profile_name!r} would ({profile.validity.days}d): they will be cut short; "
                   "add a new issuing CA and move the profile to it")


def export(config: Config, cert: str, options: render.RenderOptions) -> render.Payload:
    """The payload for `cert` in the given format, rendered from the store."""
    _check_cert(config, cert)
    store = open_store(config)
    with store.session() as session:
        row = store.current(session, cert)
        if row is None:
            raise NotFound(f"certificate {cert!r} has no active version in the store (run `certsync apply`)")
        return render.render(store.bundle(row), options)


def sign(config: Config, csr_data: bytes, profile: str, *, name: str | None = None,
         destinations: list[str] | None = None, providers: Callable | None = None,
         now: datetime | None = None) -> tuple[str, str, Report | None]:
    """CSR enrollment: (store name, chain PEM, push report when destinations were named)."""
    _check_destinations(config, destinations)
    store = open_store(config)
    with store.lock():
        with store.session() as session:
            row = enroll.issue_from_csr(config, store, session, name, profile, csr_data, now=now)
            name, chain = row.name, render.pem_bundle(store.bundle(row))
        report = None
        if destinations:
            actions = [Action("push", name, d, name, "CSR enrollment") for d in destinations]
            report = execute(config, store, Plan(actions), providers or Providers(config))
    return name, chain, report


def revoke(config: Config, cert: str, reason: str, *, serial: str | None = None, replace: bool = False,
           providers: Callable | None = None, now: datetime | None = None) -> tuple[dict, Report | None]:
    """Revoke and reissue the CA's CRL; with replace, issue a successor (new key) and push it now."""
    from sync import revoke as revoke_mod
    now = now or utcnow()
    store = open_store(config)
    with store.lock():
        with store.session() as session:
            row = revoke_mod.revoke(config, store, session, cert, reason, now=now, serial=serial)
            summary = {"certificate": cert, "serial": row.serial, "reason": row.revocation_reason,
                       "revoked_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "ca": row.authority.name,
                       "crl_number": row.authority.crl_number}
            from_csr = row.source == "csr"
        if not replace:
            return summary, None
        if from_csr or cert not in config.certificate:
            raise UsageError(f"--replace: {cert!r} is not a configured certificate; enroll a new CSR instead")
        actions = [Action("issue", cert, reason="replaces a revoked certificate", reuse_key=False),
                   *push_actions(config, cert, None, reason="replaces a revoked certificate")]
        return summary, execute(config, store, Plan(actions), providers or Providers(config), now=now)


def crl(config: Config, ca_name: str, *, now: datetime | None = None):
    """The CA's current CRL (a new one, with the next number, when the last is past half its life)."""
    from sync import revoke as revoke_mod
    store = open_store(config)
    with store.session() as session:
        return revoke_mod.current_crl(config, store, session, ca_name, now=now or utcnow())


def ocsp_response(config: Config, ca_name: str, request_der: bytes, *, now: datetime | None = None):
    """Answer one OCSP request for `ca_name` (the library call behind a future OCSP endpoint)."""
    from sync import revoke as revoke_mod
    store = open_store(config)
    with store.session() as session:
        return revoke_mod.ocsp_respond(config, store, session, ca_name, request_der, now=now or utcnow())


def _check_destinations(config: Config, destinations: list[str] | None) -> None:
    for dest in destinations or []:
        if dest not in config.destination:
            raise UsageError(f"--to: unknown destination {dest!r} (defined: {', '.join(sorted(config.destination))})")


def _check_cert(config: Config, cert: str) -> None:
    if cert not in config.certificate:
        raise UsageError(f"unknown certificate {cert!r} (defined: {', '.join(sorted(config.certificate)) or 'none'})")
