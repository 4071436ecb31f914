"""Gathering the inputs of a plan: desired state from config, facts from the store, remote listings.

Providers are built lazily per destination (so a run that touches only AWS imports only boto3),
and listings of different destinations run in parallel.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from cryptography.hazmat.primitives.serialization import Encoding

from providers.base import Provider, load_provider_factory
from sync import enroll, plan, render
from sync.config import DEFAULT_RENEW_FRACTION, Config
from sync.errors import one_line
from sync.store import Authority, Store

ProviderFactory = Callable[[str], Provider]


def render_options(config: Config, destination: str) -> render.RenderOptions:
    dest = config.destination[destination]
    return render.RenderOptions(dest.format, dest.pkcs12_password_env, dest.pkcs12_encryption)


class Providers:
    """One provider per destination, built on first use; a failure to build is remembered."""

    def __init__(self, config: Config, factory: Callable | None = None) -> None:
        self.config = config
        self._factory = factory
        self._built: dict[str, Provider | Exception] = {}
        self._lock = threading.Lock()                   # guards the two dicts
        self._building: dict[str, threading.Lock] = {}  # one per destination: slow builds in parallel

    def __call__(self, destination: str) -> Provider:
        with self._lock:
            building = self._building.setdefault(destination, threading.Lock())
        with building:
            if destination not in self._built:
                dest = self.config.destination[destination]
                try:
                    factory = self._factory or load_provider_factory(dest.provider)
                    self._built[destination] = factory(dest)
                except Exception as exc:  # remembered: every job of that lane fails with it, once built
                    self._built[destination] = exc
        built = self._built[destination]
        if isinstance(built, Exception):
            raise built
        return built


def desired_state(config: Config) -> list[plan.Desired]:
    wanted = []
    for name, spec in config.certificate.items():
        profile = config.profile[spec.profile]
        renew = profile.renew_before
        wanted.append(plan.Desired(
            name=name, ca=profile.ca, sans=tuple(enroll.san_list(spec)), key_type=spec.key or profile.key,
            renew_window=renew.duration if renew else None,
            renew_fraction=(renew.fraction if renew and renew.fraction is not None else DEFAULT_RENEW_FRACTION),
            targets=tuple((ref.to, ref.name) for ref in spec.targets(name))))
    return wanted


def current_state(config: Config, store: Store, session) -> tuple[dict[str, plan.Current], list[str], dict[str, str]]:
    """The active version of every configured certificate, active ones no longer configured,
    and the state of every certificate's newest version."""
    current: dict[str, plan.Current] = {}
    retired: list[str] = []
    latest_states: dict[str, str] = {}
    chains: dict[int, tuple[str, list[bytes], datetime]] = {}  # authority id -> (CA name, chain DER, CA end)
    options: dict[str, render.RenderOptions] = {}
    # Plain rows streamed from the store (no ORM objects kept, no keys loaded), DER as stored:
    # nothing is parsed per certificate.
    for row in store.latest_facts(session):
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
            authority = session.get(Authority, row.authority_id)
            intermediates, root = store.chain(authority)
            found = chains[row.authority_id] = (authority.name, [c.public_bytes(Encoding.DER)
                                                                 for c in (*intermediates, root)],
                                                authority.not_after)
        ca_name, chain, ca_not_after = found
        fps = {}
        for ref in config.certificate[row.name].targets(row.name):
            if ref.to not in options:
                options[ref.to] = render_options(config, ref.to)
            fps[ref.to] = render.fingerprint([row.cert_der, *chain], bool(row.has_key), options[ref.to])
        current[row.name] = plan.Current(row.name, row.version, ca_name, tuple(row.sans), row.key_type,
                                         row.not_before, row.not_after, fps, ca_not_after)
    return current, retired, latest_states


def deployed_state(store: Store, session) -> list[plan.Deployed]:
    """Deployments of configured certificates (CSR enrollments' copies are left to their owner)."""
    csr_names = store.csr_names(session)
    return [plan.Deployed(d.cert_name, d.destination, d.remote_name, d.fingerprint, d.remote_version,
                          d.state == "present", bool(d.one_off))
            for d in store.deployment_facts(session) if d.cert_name not in csr_names]


def list_destinations(destinations: list[str], providers: ProviderFactory) -> dict[str, plan.Listing | str]:
    """Managed secrets per destination, or the error message when a listing failed."""
    def one(destination: str):
        try:
            return {s.name: s for s in providers(destination).list_managed()}
        except Exception as exc:  # an SDK error that escaped an adapter too: still one line
            return f"listing failed: {one_line(exc)}"

    if not destinations:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(destinations))) as pool:
        return dict(zip(destinations, pool.map(one, destinations)))


@dataclass
class Snapshot:
    desired: list[plan.Desired]
    current: dict[str, plan.Current]
    deployed: list[plan.Deployed]
    retired: list[str]
    latest_states: dict[str, str]
    listings: dict[str, plan.Listing | str] = field(default_factory=dict)

    def plan(self, now: datetime) -> plan.Plan:
        return plan.make_plan(self.desired, self.current, self.deployed, self.listings, now, retired=self.retired,
                              latest_states=self.latest_states)


def snapshot(config: Config, store: Store, providers: ProviderFactory) -> Snapshot:
    with store.session() as session:
        current, retired, latest_states = current_state(config, store, session)
        deployed = deployed_state(store, session)
    desired = desired_state(config)
    used = sorted({dest for want in desired for dest, _ in want.targets}
                  | {d.destination for d in deployed if d.present and d.destination in config.destination})
    snap = Snapshot(desired, current, deployed, retired, latest_states)
    snap.listings = list_destinations(used, providers)
    for record in deployed:  # deployments to destinations dropped from the config cannot be reached
        if record.present and record.destination not in config.destination:
            snap.listings.setdefault(record.destination, f"destination {record.destination!r} is no longer "
                                                         "in the config; delete the remote secret by hand")
    return snap

