"""What the store knows about certificates, CAs and copies in the clouds, for alerts and metrics.

No cloud call: the inventory (commands.inventory) plus one view per remote copy (Deployment row)
that says which version it carries and which version is current. A copy is *stale* when it does
not carry the current active version: a failed sync left it behind, or the certificate was revoked
and nothing replaced it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from sync import commands
from sync.ca import utcnow
from sync.config import Config
from sync.store import Certificate


@dataclass(frozen=True)
class DeploymentView:
    certificate: str
    destination: str
    remote_name: str
    certificate_id: int | None       # the version this copy carries (store id)
    version: int | None
    current_id: int | None           # the certificate's active version now (None: none is active)
    current_version: int | None
    pushed_at: datetime | None
    present: bool = True

    @property
    def in_sync(self) -> bool:
        return self.present and self.current_id is not None and self.certificate_id == self.current_id

    @property
    def stale(self) -> bool:
        return self.present and not self.in_sync


@dataclass(frozen=True)
class Target:
    """A configured (certificate, destination, remote name): where a copy should be."""
    certificate: str
    destination: str
    remote_name: str


@dataclass(frozen=True)
class Facts:
    inventory: commands.Inventory
    deployments: list[DeploymentView]
    targets: list[Target]
    now: datetime


def gather(config: Config, *, now: datetime | None = None) -> Facts:
    now = now or utcnow()
    inventory = commands.inventory(config, now=now)
    store = commands.open_store(config)
    with store.session() as session:
        versions: dict[int, int] = {}                 # store id -> version number
        current: dict[str, tuple[int, int]] = {}      # name -> (id, version) of the newest active version
        for row_id, name, version, state in session.execute(
                select(Certificate.id, Certificate.name, Certificate.version, Certificate.state)):
            versions[row_id] = version
            if state == "active" and version > current.get(name, (0, 0))[1]:
                current[name] = (row_id, version)
        views = []
        for row in store.deployments(session):
            if row.state != "present":
                continue
            cur = current.get(row.cert_name)
            views.append(DeploymentView(row.cert_name, row.destination, row.remote_name, row.certificate_id,
                                        versions.get(row.certificate_id), cur[0] if cur else None,
                                        cur[1] if cur else None, row.pushed_at))
    targets = [Target(name, ref.to, ref.name) for name, spec in config.certificate.items()
               for ref in spec.targets(name)]
    views.sort(key=lambda v: (v.certificate, v.destination, v.remote_name))
    return Facts(inventory, views, targets, now)


def expiring(inventory: commands.Inventory, within: timedelta, now: datetime) -> commands.Inventory:
    """Only active certificates and CAs whose not_after is before now + within (expired ones too)."""
    horizon = now + within
    certificates = [r for r in inventory.certificates if r.state == "active" and r.not_after <= horizon]
    authorities = [ca for ca in inventory.authorities if ca_not_after(ca) <= horizon]
    return replace(inventory, certificates=certificates, authorities=authorities)


def ca_not_after(ca: dict) -> datetime:
    return datetime.strptime(ca["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
