"""The application object: one per command run. It owns the config, one open store, the
providers (one per destination, built on first use) and the clock; the commands are its methods.
Nothing here prints: the CLI (and the tests, and any other caller) turn the results into output.

    with App(config) as app:
        report = app.apply()

The store is opened on first use and closed with the App. The master key is loaded only when a
private key is sealed or opened, so `plan`, `list`, `metrics` and reading a current CRL run
without it (a pull-request plan job needs no key).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from collections.abc import Iterator

from cryptography import x509
from cryptography.x509 import ocsp

from sync import found, inventory as inventory_mod
from sync.ca import hierarchy, revoke as revocations
from sync.ca.issue import issue_from_csr
from sync.clock import rfc3339, utcnow
from providers.base import CERT_LABEL
from sync import config as config_mod, logs
from sync.config import Config
from sync.config_server import TOKEN_SCOPES
from sync.discovery import adopt as adoption, clouds, scan as discovery
from sync.errors import LockError, NotFound, UsageError, one_line
from sync.pki import render
from sync.reconcile import pacing, runners
from sync.reconcile.apply import execute, push_actions
from sync.reconcile.deadline import Deadline
from sync.reconcile.destinations import ProviderFactory, Providers
from sync.reconcile.plan import Action, Kind, Plan
from sync.reconcile.report import Report, Result, Status
from sync.reconcile.snapshot import list_destinations, snapshot
from sync.store import RunLock, Store, keyring

log = logs.get("app")


@dataclass(frozen=True)
class InitResult:
    cas: list[hierarchy.CAStatus]
    schema_before: str | None  # None: a new store
    schema_after: str
    untagged: list[str] = field(default_factory=list)  # rows from before 0004 whose certificate did not check


class App:
    def __init__(
        self, config: Config, *, providers: ProviderFactory | None = None, now: datetime | None = None
    ) -> None:
        """providers: destination name -> provider (default: built from the config);
        now: a fixed clock (tests, what-if runs); default the current time at each reading."""
        self.config = config
        logs.add_url_secrets(config.store_url())  # masked in every output, even out of the URL
        # every call through self.providers is paced under its quota domain (pacing.PacedProvider);
        # discovery paces its own reads and uses the bare ones
        self.pacing = pacing.Pacing(config)
        self.providers = providers or Providers(config)
        self._now = now
        self._store: Store | None = None
        self._held: RunLock | None = None

    # -- what the commands share -------------------------------------------------------------------
    @property
    def providers(self) -> ProviderFactory:
        """Destination name -> provider, its calls paced (set: the bare factory, wrapped here)."""
        return self._paced

    @providers.setter
    def providers(self, factory: ProviderFactory) -> None:
        self.raw_providers = factory
        self._paced = self.pacing.wrap(factory)

    @property
    def now(self) -> datetime:
        return self._now or utcnow()

    @property
    def store(self) -> Store:
        """The store, opened on first use (its schema must be at head: `certsync init` upgrades)."""
        if self._store is None:
            self._store = self._open_store(create=False)
        return self._store

    def _open_store(self, *, create: bool) -> Store:
        key_file = self.config.resolve(self.config.store.key_file) if self.config.store.key_file else None
        return Store(
            self.config.store_url(),
            create=create,
            key_file=key_file,
            connect_timeout=self.config.store.connect_timeout,
            statement_timeout=self.config.store.statement_timeout,
        )

    @contextmanager
    def lock(self) -> Iterator[RunLock]:
        """The run lock: one writer at a time, waiting up to store.lock_timeout."""
        with RunLock(self.store, timeout=self.config.store.lock_timeout).held() as held:
            self._held = held
            try:
                yield held
            finally:
                self._held = None

    def check_lock(self) -> None:
        """Raise LockError if this run held the run lock and lost it (apply asks before each write)."""
        if self._held is not None:
            self._held.check()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- commands ----------------------------------------------------------------------------------
    def init(self) -> InitResult:
        """Create the store (or upgrade its schema) and every configured CA it lacks; tag the
        certificates stored before the integrity tags (those that check against their sealed key
        and issuer; the others are listed in `untagged` and refused wherever they would be used)."""
        self.close()
        self._store = self._open_store(create=True)
        self._store.unlock(create=True)
        with self.lock():  # two first runs at once must not make two CAs
            with self.store.transaction() as tx:
                cas = hierarchy.init_cas(self.config, tx, self.now)
                # rows from before the integrity tags (revision 0004) are tagged once they check
                untagged = tx.authorities.tag_untagged() + tx.certificates.tag_untagged()
        before, after = self.store.schema_change or (None, "")
        return InitResult(cas, before, after, untagged)

    def plan(self) -> Plan:
        return snapshot(self.config, self.store, self.providers).plan(self.now)

    def apply(self, *, progress=None, deadline: Deadline | None = None) -> Report:
        """Issue missing, renew due, push changed, repair drift, delete retired. deadline
        (--max-duration): once it has passed, no new action starts."""
        with self.lock():
            snap = snapshot(self.config, self.store, self.providers)
            return execute(self, snap.plan(self.now), retired=snap.retired, progress=progress, deadline=deadline)

    def apply_shared(self, *, runner: int = 0, progress=None, deadline: Deadline | None = None) -> Report:
        """`apply --shared`: one of several runners on one store (sync/reconcile/runners.py). Each
        quota domain is done by whichever runner takes its lock; its budget is shared in the store."""
        self.pacing.share(self._reserve)
        report = Report()
        started = time.monotonic()
        by_domain = runners.domains(self.config)
        for domain in runners.order(list(by_domain), runner):
            taken = False
            try:
                with RunLock(self.store, runners.lock_name(domain)).held() as held:
                    taken, self._held = True, held
                    runners.merge(report, self._apply_domain(set(by_domain[domain]), progress, deadline))
            except LockError as exc:
                if taken:  # lost while working, or the issuance wait ran out: the run fails
                    raise
                log.info("domain %s: another runner holds it (%s)", domain, one_line(exc))
            finally:
                self._held = None
        if not by_domain:  # certificates without destinations: issuance only
            with self.lock():
                snap = snapshot(self.config, self.store, self.providers, only=set())
                runners.merge(report, execute(self, snap.plan(self.now), deadline=deadline))
        report.seconds = time.monotonic() - started
        return report

    def _apply_domain(self, dests: set[str], progress, deadline: Deadline | None) -> Report:
        snap = snapshot(self.config, self.store, self.providers, only=dests)
        issue, rest = runners.split(snap.plan(self.now))
        report = Report()
        failed: set[str] = set()
        if issue:
            domain_lock, self._held = self._held, None
            try:
                wait = max(self.config.store.lock_timeout, runners.ISSUANCE_WAIT)
                with RunLock(self.store, timeout=wait).held() as held:  # issuance is shared: one runner at a time
                    self._held = held
                    planned = {
                        a.cert: (snap.current[a.cert].version if a.cert in snap.current else None) for a in issue
                    }
                    todo, done = runners.still_needed(issue, planned, self._versions_in_force)
                    runners.merge(report, execute(self, Plan(todo), deadline=deadline))
            finally:
                self._held = domain_lock
            report.results.extend(Result(a, Status.UNCHANGED, "issued by another runner") for a in done)
            failed = {
                r.action.cert
                for r in report.results
                if r.status != Status.DONE and r.action.kind in (Kind.ISSUE, Kind.RENEW)
            }
        rest, skipped = runners.after_issuance(rest, failed)
        report.results.extend(skipped)
        runners.merge(report, execute(self, Plan(rest), progress=progress, deadline=deadline))
        return report

    def _versions_in_force(self, names: list[str]) -> dict[str, int]:
        with self.store.transaction() as tx:
            return {name: row.version for name, row in tx.certificates.current_many(names).items()}

    def _reserve(self, key: str, tokens: float, rate: float) -> float:
        """A block of a domain's shared budget (pacing.SharedBucket): seconds to wait for its first token."""
        with self.store.transaction(serialized=True) as tx:
            return tx.budgets.reserve(key, tokens, rate)

    def push(self, cert: str, destinations: list[str] | None = None) -> Report:
        """Push one certificate now, even if unchanged; issues it first if it was never issued.
        A CSR enrollment (not in the config) is pushed chain-only, to the destinations named."""
        self._check_destinations(destinations)
        with self.lock():
            return execute(self, self._push_plan(cert, destinations))

    def push_dry_run(self, cert: str, destinations: list[str] | None = None) -> Plan:
        """What `push` would do, writing nothing: one read per target tells create, update, or a
        refusal under the ownership rules."""
        self._check_destinations(destinations)
        return Plan(
            [self._dry_push(a) if a.kind == Kind.PUSH else a for a in self._push_plan(cert, destinations).actions]
        )

    def _dry_push(self, action: Action) -> Action:
        assert action.destination is not None and action.remote_name is not None
        try:
            remote = self.providers(action.destination).get(action.remote_name)
        except Exception as exc:
            return replace(action, kind=Kind.ERROR, reason=f"cannot read the destination: {one_line(exc)}")
        if remote is None:
            return replace(action, reason="would create", exists=False)
        adopt = self.config.destination[action.destination].adopt
        owner = remote.labels.get(CERT_LABEL)
        if not remote.managed and not adopt:
            return replace(
                action,
                kind=Kind.ERROR,
                reason="would be refused: the secret exists and is not managed "
                "by certsync (set adopt = true to take it over)",
            )
        if remote.managed and owner != action.cert and not adopt:
            return replace(
                action,
                kind=Kind.ERROR,
                reason=f"would be refused: the secret belongs to certificate "
                f"{owner!r} (set adopt = true to take it over)",
            )
        ours = remote.managed and owner == action.cert
        return replace(action, reason="would update" + ("" if ours else " (adopting it)"), exists=True)

    def _push_plan(self, cert: str, destinations: list[str] | None) -> Plan:
        with self.store.transaction() as tx:
            row = tx.certificates.current(cert)
            from_csr = row is not None and row.source == "csr"
        if from_csr:
            if not destinations:
                raise UsageError(f"certificate {cert!r} was enrolled from a CSR: name its destinations with --to")
            self._refuse_taken(cert, [(d, cert) for d in destinations])
            return Plan([Action(Kind.PUSH, cert, d, cert, "one-off push") for d in destinations])
        self._check_cert(cert)
        actions = push_actions(self.config, cert, destinations)
        self._refuse_taken(
            cert,
            [
                (a.destination, a.remote_name)
                for a in actions
                if a.destination is not None and a.remote_name is not None
            ],
        )
        if row is None:
            actions.insert(0, Action(Kind.ISSUE, cert, reason="not issued yet"))
        return Plan(actions)

    def renew(self, cert: str, *, reuse_key: bool | None = None) -> Report:
        """Renew now (client-driven) and push the successor to every destination of the certificate.
        reuse_key None follows the profile's key_rotation; True keeps the key, False makes a new one."""
        self._check_cert(cert)
        actions = [
            Action(Kind.RENEW, cert, reason="renewal requested", reuse_key=reuse_key),
            *push_actions(self.config, cert, None, reason="new certificate version"),
        ]
        with self.lock():
            return execute(self, Plan(actions))

    def retire(self, cert: str) -> Report:
        """Delete the certificate from every destination it was pushed to, then mark it retired.
        Its history stays in the store; a secret certsync does not own is never deleted."""
        with self.lock():
            with self.store.transaction() as tx:
                if not tx.certificates.versions_of(cert):
                    raise NotFound(f"certificate {cert!r} is not in the store")
                deployed = [(d.destination, d.remote_name) for d in tx.deployments.present_of(cert)]
            actions = []
            for dest, name in deployed:
                if dest in self.config.destination:
                    actions.append(Action(Kind.DELETE, cert, dest, name, "retired"))
                else:
                    actions.append(
                        Action(
                            Kind.ERROR,
                            cert,
                            dest,
                            name,
                            f"destination {dest!r} is no longer in the config; delete the remote secret by hand",
                        )
                    )
            # and by tag: a copy whose record a run lost when it died (one listing per destination)
            known = set(deployed)
            for dest, listing in list_destinations(sorted(self.config.destination), self.providers).items():
                if isinstance(listing, str):
                    actions.append(Action(Kind.ERROR, cert, dest, None, listing))
                    continue
                actions.extend(
                    Action(Kind.DELETE, cert, dest, name, "retired (found by its tags; no record)")
                    for name, secret in sorted(listing.items())
                    if secret.labels.get(CERT_LABEL) == cert and (dest, name) not in known
                )
            return execute(self, Plan(actions), retired=[cert])

    def inventory(self) -> inventory_mod.Inventory:
        """What the store knows, without calling any cloud: in sync = last push carried this version."""
        with self.store.transaction() as tx:
            return inventory_mod.inventory(self.config, tx, self.now)

    def facts(self) -> inventory_mod.Facts:
        """The inventory plus every copy in the clouds and the found certificates (for alerts and metrics)."""
        within = self.config.discovery.expiring_within if self.config.discovery else timedelta(days=30)
        with self.store.transaction() as tx:
            gathered = inventory_mod.gather(self.config, tx, self.now)
            return replace(gathered, discovered=found.rows(tx, self.now, within))

    def discover(self, request: discovery.Request) -> discovery.Result:
        """Scan what `request` lists (sources by name: tls, files, clouds) and record it in the
        inventory. Nothing is written anywhere but the store; the scan runs outside any transaction."""
        with self.store.transaction() as tx:
            roots = [row.certificate for row in tx.authorities.all()]
        now = self.now
        observations, scopes = discovery.observe(request, discovery.Context(self.config, now, roots, self.providers))
        with self.store.transaction() as tx:
            return discovery.store(tx, observations, scopes, now, request.sources())

    def discovered(self, *, expiring: timedelta | None = None, unmanaged: bool = False) -> list[dict]:
        """The discovery inventory (certificates still seen somewhere), soonest expiry first."""
        settings = self.config.discovery
        within = settings.expiring_within if settings else timedelta(days=30)
        with self.store.transaction() as tx:
            return [row.as_dict() for row in found.rows(tx, self.now, within, expiring=expiring, unmanaged=unmanaged)]

    def alert_facts(self, expiring_within: timedelta) -> inventory_mod.Facts:
        """What alerts need: certificates ending within `expiring_within`, stale copies, the CAs,
        and the found certificates with problems."""
        within = self.config.discovery.expiring_within if self.config.discovery else timedelta(days=30)
        with self.store.transaction() as tx:
            gathered = inventory_mod.alert_facts(self.config, tx, self.now, expiring_within)
            return replace(gathered, discovered=found.rows(tx, self.now, within))

    def export(self, cert: str, options: render.RenderOptions) -> render.Payload:
        """The payload for `cert` in the given format, rendered from the store."""
        self._check_cert(cert)
        with self.store.transaction() as tx:
            row = tx.certificates.current(cert)
            if row is None:
                raise NotFound(f"certificate {cert!r} has no active version in the store (run `certsync apply`)")
            return render.render(tx.certificates.bundle(row), options)

    def sign(
        self, csr_data: bytes, profile: str, *, name: str | None = None, destinations: list[str] | None = None
    ) -> tuple[str, str, Report | None]:
        """CSR enrollment: (store name, chain PEM, push report when destinations were named)."""
        self._check_destinations(destinations)

        def refuse_taken(store_name: str) -> None:  # before anything is issued or stored
            self._refuse_taken(store_name, [(d, store_name) for d in destinations or []])

        with self.lock():
            with self.store.transaction() as tx:
                row = issue_from_csr(self.config, tx, name, profile, csr_data, self.now, check_name=refuse_taken)
                name, chain = row.name, render.pem_bundle(tx.certificates.bundle(row))
            report = None
            if destinations:
                actions = [Action(Kind.PUSH, name, d, name, "CSR enrollment") for d in destinations]
                report = execute(self, Plan(actions))
        return name, chain, report

    def revoke(
        self, cert: str, reason: str, *, serial: str | None = None, replace: bool = False
    ) -> tuple[dict, Report | None]:
        """Revoke and reissue the CA's CRL; with replace, issue a successor (new key) and push it now.
        keyCompromise revokes every unexpired version holding the key (summary["also_revoked"])."""
        now = self.now
        refused = UsageError(f"--replace: {cert!r} is not a configured certificate; enroll a new CSR instead")
        if replace and cert not in self.config.certificate:
            raise refused  # before anything is written
        with self.lock():
            with self.store.transaction(serialized=True) as tx:  # publishes a CRL
                row, others = revocations.revoke(self.config, tx, cert, reason, now, serial=serial)
                if replace and row.source == "csr":
                    raise refused  # inside the transaction: the revocation is rolled back
                summary = {
                    "certificate": cert,
                    "serial": row.serial,
                    "reason": row.revocation_reason,
                    "revoked_at": rfc3339(now),
                    "ca": row.authority.name,
                    "crl_number": row.authority.crl_number,
                    # keyCompromise: every other unexpired version holding the same key
                    "also_revoked": [
                        {"certificate": o.name, "version": o.version, "serial": o.serial, "ca": o.authority.name}
                        for o in others
                    ],
                }
            if not replace:
                return summary, None
            actions = [
                Action(Kind.ISSUE, cert, reason="replaces a revoked certificate", reuse_key=False),
                *push_actions(self.config, cert, None, reason="replaces a revoked certificate"),
            ]
            return summary, execute(self, Plan(actions))

    def rotate_master_key(self, *, new_key_file: Path | None = None, new_key_env: str | None = None) -> dict:
        """Seal every private key again under a new master key and re-tag every certificate, in one
        transaction under the run lock. The new key comes from `new_key_env`, or is made here and
        written to `new_key_file` (0600, never over an existing file) before the commit: a crash
        leaves the store under the old key (and, at worst, an unused new key file)."""
        if (new_key_file is None) == (new_key_env is None):
            raise UsageError("rotate-master-key: give exactly one of --new-key-file and --new-key-env")
        if new_key_file is not None and (new_key_file.exists() or new_key_file.is_symlink()):
            raise UsageError(f"--new-key-file: {new_key_file} already exists; refusing to overwrite a master key")
        old = self.store.master_key()  # loaded and checked against the store
        raw = keyring.new_key() if new_key_file is not None else None
        new = keyring.MasterKey(raw, str(new_key_file)) if raw is not None else keyring.from_env(new_key_env or "")
        if old.matches(new):
            raise UsageError("rotate-master-key: the new key is the current key")
        with self.lock():
            with self.store.transaction(serialized=True) as tx:
                authorities = tx.authorities.reseal(new)
                versions = tx.certificates.reseal(new)
                tx.acme.reseal(new)
                tx.settings.put("verifier", new.verifier())
                tx.flush()
                if new_key_file is not None and raw is not None:
                    keyring.write_key_file(new_key_file, raw)
        self.store.use_master_key(new)
        return {"authorities": authorities, "certificate_versions": versions, "new_key": new.source}

    def crl(self, ca_name: str) -> x509.CertificateRevocationList:
        """The CA's current CRL (a new one, with the next number, when the last is past half its life)."""
        with self.store.transaction() as tx:  # the common case: a current CRL, read only
            crl = revocations.fresh_crl(self.config, tx, ca_name, self.now)
        if crl is not None:
            return crl
        with self.store.transaction(serialized=True) as tx:  # read again under the CA's lock, then publish
            return revocations.current_crl(self.config, tx, ca_name, self.now)

    def ocsp_response(self, ca_name: str, request_der: bytes) -> ocsp.OCSPResponse:
        """Answer one OCSP request for `ca_name`."""
        with self.store.transaction() as tx:
            return revocations.ocsp_respond(self.config, tx, ca_name, request_der, self.now)

    # -- discovery ---------------------------------------------------------------------------------
    def discover_clouds(self, destinations: list[str] | None = None) -> clouds.CloudDiscovery:
        """Inspect every secret of the destinations (default: [discovery.clouds] or all) for
        certificates and record their facts; reads only, paced under each cloud's read quota."""
        return clouds.discover(self.config, self.raw_providers, self.store, destinations, self.now)

    def adopt(self, key: str, name: str, profile: str, *, append_to: Path | None = None) -> adoption.Proposal:
        """The [certificate.NAME] stanza replacing a found certificate (by fingerprint or location);
        appended to `append_to` (the config file) when given and every name passes the profile."""
        with self.store.transaction() as tx:
            found = tx.discovery.lookup(key)
            if found is None:
                raise NotFound(
                    f"{key!r}: no discovered certificate has this fingerprint or location "
                    "(run `certsync discover` first)"
                )
            proposal = adoption.propose(self.config, found, key, name, profile)
        if append_to is not None:
            adoption.append(append_to, proposal)
        return proposal

    # -- argument checks ---------------------------------------------------------------------------
    def _check_destinations(self, destinations: list[str] | None) -> None:
        for dest in destinations or []:
            if dest not in self.config.destination:
                raise UsageError(
                    f"--to: unknown destination {dest!r} (defined: {', '.join(sorted(self.config.destination))})"
                )

    def _refuse_taken(self, cert: str, targets: list[tuple[str, str]]) -> None:
        """A one-off push never writes a secret another configured certificate targets (through
        any destination reaching the same store): a usage error, before any call."""
        owners = config_mod.target_owners(self.config)
        for destination, remote_name in targets:
            owner, where = owners.get(config_mod.secret_key(self.config, destination, remote_name), (cert, ""))
            if owner != cert:
                raise UsageError(
                    f"--to {destination}: secret {remote_name!r} is the target of certificate {owner!r}"
                    f"{config_mod.same_store_note(destination, where)}; {cert!r} may not be pushed there"
                )

    def _check_cert(self, cert: str) -> None:
        if cert not in self.config.certificate:
            raise UsageError(
                f"unknown certificate {cert!r} (defined: {', '.join(sorted(self.config.certificate)) or 'none'})"
            )

    # -- server credentials and the audit trail ----------------------------------------------------
    def create_token(self, name: str, profile: str, scopes: list[str], expires_in: timedelta | None) -> dict:
        """A new API token bound to `profile`: its facts and, this once, the secret."""
        if profile not in self.config.profile:
            raise UsageError(
                f"--profile: unknown profile {profile!r} (defined: {', '.join(sorted(self.config.profile))})"
            )
        unknown = sorted(set(scopes) - set(TOKEN_SCOPES))
        if unknown:
            raise UsageError(f"--scope: unknown scope {unknown[0]!r} (scopes: {', '.join(TOKEN_SCOPES)})")
        if not config_mod.OBJECT_NAME.fullmatch(name):
            raise UsageError(f"token name {name!r}: 1-63 lowercase letters, digits or '-'")
        now = self.now
        with self.store.transaction() as tx:
            row, secret = tx.tokens.create(name, profile, scopes, now, now + expires_in if expires_in else None)
            tx.audit.record(
                at=now,
                actor="cli",
                action="token.create",
                protocol="cli",
                detail={"token": name, "profile": profile, "scopes": row.scopes},
            )
            return {**_token_facts(row), "token": secret}

    def tokens(self) -> list[dict]:
        with self.store.transaction() as tx:
            return [_token_facts(row) for row in tx.tokens.all()]

    def revoke_token(self, name: str) -> dict:
        now = self.now
        with self.store.transaction() as tx:
            row = tx.tokens.revoke(name, now)
            tx.audit.record(at=now, actor="cli", action="token.revoke", protocol="cli", detail={"token": name})
            return _token_facts(row)

    def audit(
        self,
        *,
        limit: int = 100,
        since: datetime | None = None,
        certificate: str | None = None,
        action: str | None = None,
    ) -> list[dict]:
        with self.store.transaction() as tx:
            return [
                {
                    "at": rfc3339(e.at),
                    "actor": e.actor,
                    "action": e.action,
                    "protocol": e.protocol,
                    "outcome": e.outcome,
                    "certificate": e.certificate,
                    "serial": e.serial,
                    "remote_addr": e.remote_addr,
                    "detail": e.detail or {},
                }
                for e in tx.audit.recent(limit=limit, since=since, certificate=certificate, action=action)
            ]


def _token_facts(row) -> dict:
    return {
        "name": row.name,
        "profile": row.profile,
        "scopes": list(row.scopes),
        "created_at": rfc3339(row.created_at),
        "expires_at": rfc3339(row.expires_at) if row.expires_at else None,
        "revoked_at": rfc3339(row.revoked_at) if row.revoked_at else None,
        "last_used_at": rfc3339(row.last_used_at) if row.last_used_at else None,
    }
