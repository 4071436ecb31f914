"""The discovery inventory: one row per certificate found (by SHA-256 fingerprint) and one per
place it was seen, with first seen, last seen and gone since. A scan records what it saw; every
location under the scan's scopes that it did not see again is marked gone (not deleted: the
history of where a certificate was is what an incident review asks for)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.pki.facts import CertificateFacts
from sync.store.models import DiscoveredCertificate, DiscoveryLocation


@dataclass(frozen=True)
class Sighting:
    kind: str  # tls | file | aws | gcp | azure
    location: str  # tls://host:port/sni, file:///abs/path, aws:DEST/NAME, ...
    fingerprint: str
    position: int = 0  # 0: the leaf (or the first certificate of a file)
    details: dict = field(default_factory=dict)


@dataclass
class ScanSummary:
    certificates_new: int = 0
    locations_new: int = 0
    locations_seen: int = 0
    locations_gone: int = 0


@dataclass(frozen=True)
class Found:
    certificate: DiscoveredCertificate
    locations: list[DiscoveryLocation]


class Discovery:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(
        self,
        found: Iterable[tuple[CertificateFacts, bool]],
        sightings: list[Sighting],
        scopes: Iterable[str],
        now: datetime,
    ) -> ScanSummary:
        """Upsert the certificates (facts, managed) and their sightings; locations starting with one
        of `scopes` that were not sighted now are marked gone."""
        summary = ScanSummary()
        for facts, managed in found:
            row = self.session.get(DiscoveredCertificate, facts.fingerprint)
            if row is None:
                summary.certificates_new += 1
                row = DiscoveredCertificate(
                    fingerprint=facts.fingerprint,
                    subject=facts.subject,
                    issuer=facts.issuer,
                    serial=facts.serial,
                    sans=facts.sans,
                    not_before=facts.not_before,
                    not_after=facts.not_after,
                    key_type=facts.key_type,
                    key_size=facts.key_size,
                    signature_algorithm=facts.signature_algorithm,
                    self_signed=facts.self_signed,
                    is_ca=facts.is_ca,
                    managed=managed,
                    first_seen=now,
                    last_seen=now,
                )
                self.session.add(row)
            else:
                row.last_seen, row.managed = now, managed
        self.session.flush()
        scopes = tuple(scopes)
        existing = {(loc.location, loc.fingerprint): loc for loc in self._under(scopes)}
        seen: set[tuple[str, str]] = set()
        for s in sightings:
            key = (s.location, s.fingerprint)
            seen.add(key)
            loc = existing.get(key) or self.session.scalar(
                select(DiscoveryLocation).where(
                    DiscoveryLocation.location == s.location, DiscoveryLocation.fingerprint == s.fingerprint
                )
            )
            summary.locations_seen += 1
            if loc is None:
                summary.locations_new += 1
                self.session.add(
                    DiscoveryLocation(
                        fingerprint=s.fingerprint,
                        kind=s.kind,
                        location=s.location,
                        position=s.position,
                        details=s.details,
                        first_seen=now,
                        last_seen=now,
                        gone_since=None,
                    )
                )
            else:
                loc.last_seen, loc.gone_since, loc.details, loc.position = now, None, s.details, s.position
        for key, loc in existing.items():
            if key not in seen and loc.gone_since is None:
                loc.gone_since = now
                summary.locations_gone += 1
        return summary

    def _under(self, scopes: tuple[str, ...]) -> list[DiscoveryLocation]:
        if not scopes:
            return []
        rows = self.session.scalars(select(DiscoveryLocation))
        return [r for r in rows if any(_covers(scope, r.location) for scope in scopes)]

    def found(
        self, *, not_after_before: datetime | None = None, unmanaged: bool = False, include_gone: bool = False
    ) -> list[Found]:
        """Found certificates (soonest expiry first) with their locations; by default only those
        still seen somewhere."""
        query = select(DiscoveredCertificate).order_by(DiscoveredCertificate.not_after)
        if not_after_before is not None:
            query = query.where(DiscoveredCertificate.not_after <= not_after_before)
        if unmanaged:
            query = query.where(DiscoveredCertificate.managed.is_(False))
        locations: dict[str, list[DiscoveryLocation]] = {}
        for loc in self.session.scalars(select(DiscoveryLocation).order_by(DiscoveryLocation.location)):
            if include_gone or loc.gone_since is None:
                locations.setdefault(loc.fingerprint, []).append(loc)
        return [
            Found(row, locations.get(row.fingerprint, []))
            for row in self.session.scalars(query)
            if include_gone or locations.get(row.fingerprint)
        ]

    def lookup(self, key: str) -> Found | None:
        """A found certificate by fingerprint (a unique prefix of 8+ hex digits will do) or by location."""
        key = key.strip()
        loc = self.session.scalar(
            select(DiscoveryLocation).where(DiscoveryLocation.location == key).order_by(DiscoveryLocation.position)
        )
        if loc is not None:
            row = self.session.get(DiscoveredCertificate, loc.fingerprint)
        else:
            hex_key = key.lower().replace(":", "")
            if len(hex_key) < 8:
                return None
            rows = list(
                self.session.scalars(
                    select(DiscoveredCertificate).where(DiscoveredCertificate.fingerprint.startswith(hex_key)).limit(2)
                )
            )
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            return None
        locations = list(
            self.session.scalars(
                select(DiscoveryLocation)
                .where(DiscoveryLocation.fingerprint == row.fingerprint)
                .order_by(DiscoveryLocation.location)
            )
        )
        return Found(row, locations)


def _covers(scope: str, location: str) -> bool:
    """A scope ending in punctuation is a prefix (file:///root/, aws:DEST/, tls://127.0.0.1:); one
    ending in a letter or digit is one location (tls://host:443 covers neither tls://host:4430 nor
    tls://host:443/other-sni), with its numbered entries (#N)."""
    if not scope[-1:].isalnum():
        return location.startswith(scope)
    return location == scope or location.startswith(scope + "#")
