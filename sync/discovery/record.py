"""From what a scan saw to the discovery inventory: facts, managed or not, where."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Iterable

from cryptography import x509

from sync.pki.facts import CertificateFacts, facts_of, fingerprint
from sync.store import ScanSummary, Sighting, Transaction


@dataclass
class Observation:
    kind: str  # tls | file | aws | gcp | azure
    location: str  # tls://host:port/sni, file:///path, aws:DEST/NAME ...
    certificates: list[x509.Certificate] = field(default_factory=list)  # leaf (or first) first
    details: dict = field(default_factory=dict)  # per location: verifies, hostname match, protocol, managed_secret, ...
    error: str | None = None  # could not be read: reported, not recorded


def record(tx: Transaction, scopes: Iterable[str], observations: Iterable[Observation], now: datetime) -> ScanSummary:
    """Store what was seen (errors are the caller's to report); locations under `scopes` not seen
    again are marked gone. A certificate is managed when certsync's store holds it (same DER)."""
    found: dict[str, tuple[CertificateFacts, bool]] = {}
    sightings: list[Sighting] = []
    ours = _our_ca_fingerprints(tx)
    for obs in observations:
        if obs.error is not None:
            continue
        for position, cert in enumerate(obs.certificates):
            fp = fingerprint(cert)
            if fp not in found:
                found[fp] = (facts_of(cert), fp in ours or _issued_here(tx, cert, fp))
            sightings.append(
                Sighting(
                    obs.kind,
                    obs.location,
                    fp,
                    position,
                    obs.details if position == 0 else {"in_chain_of": obs.location},
                )
            )
    return tx.discovery.record(found.values(), _one_per_location(sightings), scopes, now)


def _one_per_location(sightings: list[Sighting]) -> list[Sighting]:
    """A certificate twice in one place (a chain file repeating its root) is one sighting."""
    seen: dict[tuple[str, str], Sighting] = {}
    for s in sightings:
        seen.setdefault((s.location, s.fingerprint), s)
    return list(seen.values())


def _issued_here(tx: Transaction, cert: x509.Certificate, fp: str) -> bool:
    row = tx.certificates.by_serial(cert.serial_number)
    return row is not None and fingerprint(row.certificate) == fp


def _our_ca_fingerprints(tx: Transaction) -> set[str]:
    return {fingerprint(row.certificate) for row in tx.authorities.all()}
