"""The discovery inventory as `list --discovered`, metrics and alerts read it: one row per found
certificate still seen somewhere, with its problems.

A certificate's problems are its own (sync.pki.facts.problems: expired, expiring, weak-key,
weak-signature) plus those of the places serving it as a leaf: `untrusted` (the served chain
verifies neither against the system store nor against certsync's roots), `hostname-mismatch`,
`incomplete-chain` (the server leaves out an intermediate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sync.clock import rfc3339
from sync.pki.facts import CertificateFacts, problems as facts_problems
from sync.store import Transaction

PLACE_PROBLEMS = (
    ("untrusted", lambda d: d.get("verifies_system") is False and d.get("verifies_certsync") is False),
    ("hostname-mismatch", lambda d: d.get("hostname_match") is False),
    ("incomplete-chain", lambda d: d.get("chain_complete") is False),
)


@dataclass(frozen=True)
class FoundRow:
    fingerprint: str
    subject: str
    sans: list[str]
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    days_left: float
    key: str
    signature_algorithm: str
    self_signed: bool
    is_ca: bool
    managed: bool
    problems: list[str] = field(default_factory=list)
    locations: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "sans": self.sans,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
            "days_left": round(self.days_left, 1),
            "key": self.key,
            "signature_algorithm": self.signature_algorithm,
            "self_signed": self.self_signed,
            "is_ca": self.is_ca,
            "managed": self.managed,
            "problems": self.problems,
            "locations": self.locations,
        }


def rows(
    tx: Transaction,
    now: datetime,
    expiring_within: timedelta,
    *,
    expiring: timedelta | None = None,
    unmanaged: bool = False,
) -> list[FoundRow]:
    """Found certificates still seen somewhere, soonest expiry first; `expiring`: only those whose
    notAfter is within it (expired ones included)."""
    horizon = now + expiring if expiring is not None else None
    found = tx.discovery.found(not_after_before=horizon, unmanaged=unmanaged)
    return [_row(f.certificate, f.locations, now, expiring_within) for f in found]


def _row(cert, locations, now: datetime, expiring_within: timedelta) -> FoundRow:
    facts = CertificateFacts(
        fingerprint=cert.fingerprint,
        subject=cert.subject,
        issuer=cert.issuer,
        serial=cert.serial,
        sans=list(cert.sans),
        not_before=cert.not_before,
        not_after=cert.not_after,
        key_type=cert.key_type,
        key_size=cert.key_size,
        signature_algorithm=cert.signature_algorithm,
        self_signed=cert.self_signed,
        is_ca=cert.is_ca,
    )
    found = facts_problems(facts, now, expiring_within)
    for loc in locations:
        for name, test in PLACE_PROBLEMS:
            if loc.position == 0 and test(loc.details or {}) and name not in found:
                found.append(name)
    key = cert.key_type if not cert.key_type.startswith(("rsa", "dsa")) else f"{cert.key_type}-{cert.key_size}"
    return FoundRow(
        cert.fingerprint,
        cert.subject,
        list(cert.sans),
        cert.issuer,
        cert.serial,
        cert.not_before,
        cert.not_after,
        (cert.not_after - now).total_seconds() / 86400,
        key,
        cert.signature_algorithm,
        cert.self_signed,
        cert.is_ca,
        cert.managed,
        found,
        [
            {
                "location": loc.location,
                "kind": loc.kind,
                "position": loc.position,
                "first_seen": rfc3339(loc.first_seen),
                "last_seen": rfc3339(loc.last_seen),
                "details": loc.details or {},
            }
            for loc in locations
        ],
    )
