"""What the store knows about certificates, CAs and copies in the clouds: for `list`, alerts and
metrics. No cloud call and no key: rows from the store, compared with the config.

A copy is *in sync* when the last push to it carried the certificate's active version, and
*stale* otherwise (a failed sync left it behind, or the version it carries was revoked and
nothing replaced it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from collections.abc import Iterator

from sync.clock import parse_rfc3339, rfc3339
from sync.store import Authority, Transaction

if TYPE_CHECKING:
    from sync.config import Config


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
    profile: str = ""  # for the dashboard's filters (not in `list`'s document)
    ca: str = ""
    not_before: datetime | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "state": self.state,
            "version": self.version,
            "serial": self.serial,
            "not_after": rfc3339(self.not_after),
            "days_left": round(self.days_left, 1),
            "destinations_in_sync": self.in_sync,
            "destinations": self.destinations,
        }


@dataclass(frozen=True)
class Inventory:
    certificates: list[InventoryRow]
    authorities: list[dict]
    warnings: list[str]


@dataclass(frozen=True)
class DeploymentView:
    certificate: str
    destination: str
    remote_name: str
    certificate_id: int | None  # the version this copy carries (store id)
    version: int | None
    current_id: int | None  # the certificate's active version now (None: none is active)
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
    inventory: Inventory
    deployments: list[DeploymentView]
    targets: list[Target]
    now: datetime
    discovered: list = field(default_factory=list)  # sync.found.FoundRow: the discovery inventory


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400


def inventory(config: Config, tx: Transaction, now: datetime) -> Inventory:
    """Every certificate's newest version with its copies in sync, and every configured CA."""
    deployed = {(d.destination, d.remote_name): d for d in tx.deployments.present()}
    rows = []
    for cert in tx.certificates.latest_summaries():
        spec = config.certificate.get(cert.name)
        targets = spec.targets(cert.name) if spec else []
        in_sync = sum(1 for t in targets if (d := deployed.get((t.to, t.name))) and d.certificate_id == cert.id)
        rows.append(
            InventoryRow(
                cert.name,
                cert.state,
                cert.version,
                cert.serial,
                cert.not_after,
                _days(cert.not_after - now),
                in_sync,
                len(targets),
                cert.profile,
                cert.ca,
                cert.not_before,
            )
        )
    authorities = {name: tx.authorities.active(name) for name in config.ca}
    cas = _cas(authorities, now)
    return Inventory(rows, cas, list(_ca_warnings(config, authorities, now)))


def _cas(authorities: dict[str, Authority | None], now: datetime) -> list[dict]:
    return [
        {
            "name": name,
            "subject": row.subject,
            "generation": row.generation,
            "not_after": rfc3339(row.not_after),
            "days_left": round(_days(row.not_after - now), 1),
        }
        for name, row in authorities.items()
        if row is not None
    ]


def _ca_warnings(config: Config, authorities: dict[str, Authority | None], now: datetime) -> Iterator[str]:
    """A CA that expires before what it would sign now: leaves get cut short (or it is expired)."""
    for name, row in authorities.items():
        if row is None:
            yield f"CA {name!r} is in the config but not in the store: run `certsync init`"
        elif row.not_after <= now:
            yield f"CA {name!r} expired on {row.not_after:%Y-%m-%d}: nothing it signs is valid"
    for profile_name, profile in config.profile.items():
        row = authorities.get(profile.ca)
        if row is not None and now < row.not_after < now + profile.validity:
            yield (
                f"CA {profile.ca!r} expires on {row.not_after:%Y-%m-%d}, before certificates issued now from "
                f"profile {profile_name!r} would ({profile.validity.days}d): they will be cut short; "
                "add a new issuing CA and move the profile to it"
            )


def gather(config: Config, tx: Transaction, now: datetime) -> Facts:
    """The inventory plus one view per copy in a cloud, and where copies should be."""
    versions: dict[int, int] = {}  # store id -> version number
    current: dict[str, tuple[int, int]] = {}  # name -> (id, version) of the newest active version
    for row_id, name, version, state in tx.certificates.version_index():
        versions[row_id] = version
        if state == "active" and version > current.get(name, (0, 0))[1]:
            current[name] = (row_id, version)
    views = []
    for row in tx.deployments.present():
        cur = current.get(row.cert_name)
        views.append(
            DeploymentView(
                row.cert_name,
                row.destination,
                row.remote_name,
                row.certificate_id,
                versions.get(row.certificate_id) if row.certificate_id else None,
                cur[0] if cur else None,
                cur[1] if cur else None,
                row.pushed_at,
            )
        )
    targets = [
        Target(name, ref.to, ref.name) for name, spec in config.certificate.items() for ref in spec.targets(name)
    ]
    views.sort(key=lambda v: (v.certificate, v.destination, v.remote_name))
    return Facts(inventory(config, tx, now), views, targets, now)


def alert_facts(config: Config, tx: Transaction, now: datetime, within: timedelta) -> Facts:
    """Only what alerts read, with set-based queries: the newest version of each certificate
    when active and ending within `within`, the copies that are stale, and the configured CAs.
    No certificate or key is loaded, and not every version ever stored."""
    rows = [
        InventoryRow(r.name, r.state, r.version, "", r.not_after, _days(r.not_after - now), 0, 0)
        for r in tx.certificates.expiring_facts(now + within)
    ]
    views = [
        DeploymentView(
            d.cert_name,
            d.destination,
            d.remote_name,
            d.certificate_id,
            d.version,
            d.current_id,
            d.current_version,
            d.pushed_at,
        )
        for d in tx.deployments.stale_facts()
    ]
    authorities = {name: tx.authorities.active(name) for name in config.ca}
    cas = _cas(authorities, now)
    return Facts(Inventory(rows, cas, []), views, [], now)


def expiring(found: Inventory, within: timedelta, now: datetime) -> Inventory:
    """Only active certificates and CAs whose not_after is before now + within (expired ones too)."""
    horizon = now + within
    certificates = [r for r in found.certificates if r.state == "active" and r.not_after <= horizon]
    authorities = [ca for ca in found.authorities if ca_not_after(ca) <= horizon]
    return replace(found, certificates=certificates, authorities=authorities)


def ca_not_after(ca: dict) -> datetime:
    return parse_rfc3339(ca["not_after"])
