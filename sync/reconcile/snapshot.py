"""The inputs of a plan, gathered: desired state from the config, facts from the store, and the
remote listings (destinations listed in parallel; no secret value is read)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import Encoding

from sync.ca.issue import san_list
from sync.config import DEFAULT_RENEW_FRACTION, Config
from sync.errors import one_line
from sync.pki import render
from sync.reconcile import plan
from sync.reconcile.destinations import ProviderFactory, render_options
from sync.store import Store, Transaction


def desired_state(config: Config) -> list[plan.Desired]:
    wanted = []
    for name, spec in config.certificate.items():
        profile = config.profile[spec.profile]
        window, fraction = renew_rule(profile)
        wanted.append(
            plan.Desired(
                name=name,
                ca=profile.ca,
                sans=tuple(san_list(spec)),
                key_type=spec.key or profile.key,
                renew_window=window,
                renew_fraction=fraction,
                targets=tuple((ref.to, ref.name) for ref in spec.targets(name)),
            )
        )
    return wanted


def renew_rule(profile) -> tuple[timedelta | None, float]:
    """(renew_window, renew_fraction) of a profile's certificates, as plan.Desired holds them."""
    renew = profile.renew_before
    return (
        renew.duration if renew else None,
        renew.fraction if renew and renew.fraction is not None else DEFAULT_RENEW_FRACTION,
    )


def current_state(
    config: Config, tx: Transaction, password_tag: Callable[[str, bytes], str]
) -> tuple[dict[str, plan.Current], list[str], dict[str, str]]:
    """The active version of every configured certificate, active ones no longer configured,
    and the state of every certificate's newest version."""
    current: dict[str, plan.Current] = {}
    retired: list[str] = []
    latest_states: dict[str, str] = {}
    chains: dict[int, tuple[str, list[bytes], datetime]] = {}  # authority id -> (CA name, chain DER, CA end)
    options: dict[str, render.RenderOptions] = {}
    # Plain rows streamed from the store (no ORM objects kept, no keys loaded), DER as stored:
    # nothing is parsed per certificate.
    for row in tx.certificates.latest_facts():
        if row.source == "csr":  # CSR enrollments are pushed by hand, never planned
            continue
        latest_states[row.name] = row.state
        if row.state != "active":
            continue
        if row.name not in config.certificate:
            retired.append(row.name)
            continue
        found = chains.get(row.authority_id)
        if found is None:
            authority = tx.authorities.get(row.authority_id)
            assert authority is not None  # a foreign key
            intermediates, root = tx.authorities.chain(authority)
            found = chains[row.authority_id] = (
                authority.name,
                [c.public_bytes(Encoding.DER) for c in (*intermediates, root)],
                authority.not_after,
            )
        ca_name, chain, ca_not_after = found
        fps = {}
        for ref in config.certificate[row.name].targets(row.name):
            if ref.to not in options:
                options[ref.to] = render_options(config, ref.to, password_tag)
            fps[ref.to] = render.fingerprint([row.cert_der, *chain], bool(row.has_key), options[ref.to])
        current[row.name] = plan.Current(
            row.name,
            row.version,
            ca_name,
            tuple(row.sans),
            row.key_type,
            row.not_before,
            row.not_after,
            fps,
            ca_not_after,
        )
    return current, retired, latest_states


def deployed_state(tx: Transaction) -> list[plan.Deployed]:
    """Deployments of configured certificates (CSR enrollments' copies are left to their owner)."""
    csr_names = tx.certificates.csr_names()
    return [
        plan.Deployed(
            d.cert_name,
            d.destination,
            d.remote_name,
            d.fingerprint,
            d.remote_version,
            d.state == "present",
            bool(d.one_off),
        )
        for d in tx.deployments.facts()
        if d.cert_name not in csr_names
    ]


def list_destinations(
    destinations: list[str], providers: ProviderFactory, everything: frozenset[str] | set[str] = frozenset()
) -> dict[str, plan.Listing | str]:
    """Managed secrets per destination, or the error message when a listing failed. Destinations
    in `everything` (adopt = true) list every secret, so the plan can show what it takes over."""

    def one(destination: str):
        try:
            provider = providers(destination)
            listing = provider.list_all() if destination in everything else provider.list_managed()
            return {s.name: s for s in listing}
        except Exception as exc:  # an SDK error that escaped an adapter too: still one line
            return f"listing failed: {one_line(exc)}"

    if not destinations:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(destinations))) as pool:
        return dict(zip(destinations, pool.map(one, destinations), strict=True))


@dataclass
class Snapshot:
    desired: list[plan.Desired]
    current: dict[str, plan.Current]
    deployed: list[plan.Deployed]
    retired: list[str]
    latest_states: dict[str, str]
    listings: dict[str, plan.Listing | str] = field(default_factory=dict)
    configured: list[str] = field(default_factory=list)  # searched by tag for copies of retired certificates

    def plan(self, now: datetime) -> plan.Plan:
        return plan.make_plan(
            self.desired,
            self.current,
            self.deployed,
            self.listings,
            now,
            retired=self.retired,
            latest_states=self.latest_states,
            configured=self.configured,
        )


def snapshot(config: Config, store: Store, providers: ProviderFactory, only: set[str] | None = None) -> Snapshot:
    """only: the destinations of one quota domain (a shared runner's part): the others are
    neither listed nor planned."""
    with store.transaction() as tx:
        current, retired, latest_states = current_state(config, tx, store.password_tag)
        deployed = deployed_state(tx)
    desired = desired_state(config)
    if only is not None:
        desired = [replace(w, targets=tuple(t for t in w.targets if t[0] in only)) for w in desired]
        deployed = [d for d in deployed if d.destination in only]
    used = sorted(
        {dest for want in desired for dest, _ in want.targets}
        | {d.destination for d in deployed if d.present and d.destination in config.destination}
    )
    if retired:  # certificates removed from config: every destination is searched for their copies by tag
        used = sorted(set(used) | set(config.destination))
    if only is not None:
        used = [d for d in used if d in only]
    snap = Snapshot(
        desired,
        current,
        deployed,
        retired,
        latest_states,
        configured=[d for d in sorted(config.destination) if only is None or d in only] if retired else [],
    )
    snap.listings = list_destinations(used, providers, {d for d in used if config.destination[d].adopt})
    for record in deployed:  # deployments to destinations dropped from the config cannot be reached
        if record.present and record.destination not in config.destination:
            snap.listings.setdefault(
                record.destination,
                f"destination {record.destination!r} is no longer in the config; delete the remote secret by hand",
            )
    return snap
