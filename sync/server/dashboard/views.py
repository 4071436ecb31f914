"""What the dashboard's pages show, gathered with the functions `certsync list` (and /metrics) use:
`App.facts()` for the inventory, the copies in the clouds and the discovery inventory,
`App.audit()` for the activity, the store's versions for one certificate. Nothing is recomputed
here but presentation (which copy holds what, where a bar starts) and the table's filters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sync.clock import rfc3339
from sync.errors import NotFound
from sync.inventory import Facts, InventoryRow
from sync.reconcile import plan, snapshot
from sync.server.state import ServerState

EXPIRING_CHOICES = (7, 30, 90)  # "expiring within" filter, in days
PAGE_ROWS = 200  # rows laid out at once; every row is in the page, the rest hidden
# until "show all" (a browser lays out 5,000 table rows slowly)
ACTIVITY_HIDDEN = ("token.use",)  # page views of the dashboard itself (allowed ones) are noise here


@dataclass(frozen=True)
class Copy:
    destination: str
    remote_name: str
    status: str  # in-sync | revoked (holds the newest version, revoked) | stale | missing
    version: int | None  # the version the copy holds (None: missing, or unknown)
    pushed_at: datetime | None = None


@dataclass(frozen=True)
class CertificateView:
    row: InventoryRow
    copies: list[Copy]
    renew_from: datetime | None  # when renewal is due (None: not configured, or no active version)

    @property
    def destinations(self) -> list[str]:
        return sorted({c.destination for c in self.copies})

    @property
    def stale(self) -> int:
        return sum(1 for c in self.copies if c.status == "stale")


@dataclass(frozen=True)
class Overview:
    facts: Facts
    certificates: list[CertificateView]
    profiles: list[str]
    cas: list[str]
    destinations: list[str]
    states: list[str]
    counts: dict = field(default_factory=dict)


def copies(facts: Facts) -> dict[str, list[Copy]]:
    """Every certificate's copies, judged as `certsync list` counts them: a copy is in sync when it
    holds the certificate's newest version (`revoked` when that version is revoked), stale when it
    holds an older one; a configured place nothing was pushed to is missing."""
    latest = {r.name: r for r in facts.inventory.certificates}
    found: dict[str, list[Copy]] = {}
    seen = set()
    for d in facts.deployments:
        row = latest.get(d.certificate)
        status = "stale"
        if row is not None and d.version == row.version:
            status = "in-sync" if row.state == "active" else row.state
        found.setdefault(d.certificate, []).append(Copy(d.destination, d.remote_name, status, d.version, d.pushed_at))
        seen.add((d.destination, d.remote_name))
    for t in facts.targets:
        if (t.destination, t.remote_name) not in seen:
            found.setdefault(t.certificate, []).append(Copy(t.destination, t.remote_name, "missing", None))
    return found


def renew_rules(state: ServerState) -> dict[str, tuple[timedelta | None, float]]:
    """certificate name -> its profile's renewal rule, as `plan` reads it (snapshot.renew_rule)."""
    by_profile = {name: snapshot.renew_rule(profile) for name, profile in state.config.profile.items()}
    return {name: by_profile[spec.profile] for name, spec in state.config.certificate.items()}


def overview(state: ServerState) -> Overview:
    facts = state.app.facts()
    rules = renew_rules(state)
    by_cert = copies(facts)
    views = []
    for row in facts.inventory.certificates:
        rule = rules.get(row.name)
        renew = None
        if rule is not None and row.state == "active" and row.not_before is not None:
            renew = row.not_after - plan.window_of(*rule, row.not_after - row.not_before)
        views.append(
            CertificateView(row, sorted(by_cert.get(row.name, []), key=lambda c: (c.destination, c.remote_name)), renew)
        )
    rows = facts.inventory.certificates
    counts = {
        "certificates": len(rows),
        "expiring": sum(1 for r in rows if r.state == "active" and r.days_left <= 30),
        "revoked": sum(1 for r in rows if r.state == "revoked"),
        "stale": sum(v.stale for v in views),
        "discovered": len(facts.discovered),
        "unmanaged": sum(1 for f in facts.discovered if not f.managed),
    }
    return Overview(
        facts,
        views,
        sorted({r.profile for r in rows}),
        sorted({r.ca for r in rows}),
        sorted({c.destination for v in views for c in v.copies}),
        sorted({r.state for r in rows}),
        counts,
    )


# -- the certificates table's filters (the page's script applies the same rules in the browser) ------
def matches(view: CertificateView, query: Mapping[str, str]) -> bool:
    row = view.row
    text = query.get("q", "").strip().lower()
    if text and text not in row.name.lower() and text not in row.serial.lower():
        return False
    for key, value in (("profile", row.profile), ("ca", row.ca), ("state", row.state)):
        if query.get(key) and query[key] != value:
            return False
    if query.get("destination") and query["destination"] not in view.destinations:
        return False
    within = query.get("expiring", "")
    return not within.isdigit() or (row.state == "active" and row.days_left <= int(within))


# -- one certificate -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Version:
    version: int
    serial: str
    state: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None


@dataclass(frozen=True)
class Detail:
    view: CertificateView
    subject: str
    issuer: str
    sans: list[str]
    key: str
    signature: str
    fingerprint: str
    chain: list[dict]
    versions: list[Version]
    source: str
    configured: bool


def detail(state: ServerState, name: str) -> Detail:
    found = overview(state)
    view = next((v for v in found.certificates if v.row.name == name), None)
    if view is None:
        raise NotFound(f"no certificate {name!r}")
    with state.transaction() as tx:
        rows = tx.certificates.versions_of(name)
        newest = rows[0]
        cert = tx.certificates.checked(newest)
        intermediates, root = tx.authorities.checked_chain(newest.authority)
        versions = [
            Version(r.version, r.serial, r.state, r.not_before, r.not_after, r.revoked_at, r.revocation_reason)
            for r in rows
        ]
        source = newest.source
    chain = [_brief(c) for c in (cert, *intermediates, root)]
    return Detail(
        view,
        cert.subject.rfc4514_string(),
        cert.issuer.rfc4514_string(),
        _sans(cert),
        _key(cert),
        cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else "ed25519",
        cert.fingerprint(hashes.SHA256()).hex(),
        chain,
        versions,
        source,
        name in state.config.certificate,
    )


def _brief(cert: x509.Certificate) -> dict:
    return {
        "subject": cert.subject.rfc4514_string(),
        "not_after": rfc3339(cert.not_valid_after_utc),
        "fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return (
        [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
        + [f"IP:{n}" for n in ext.get_values_for_type(x509.IPAddress)]
        + [f"URI:{n}" for n in ext.get_values_for_type(x509.UniformResourceIdentifier)]
        + [f"email:{n}" for n in ext.get_values_for_type(x509.RFC822Name)]
    )


def _key(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ec-{key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    return type(key).__name__


def activity(state: ServerState, limit: int = 100) -> list[dict]:
    """The audit trail (newest first) as `certsync audit` prints it, without the dashboard's own reads."""
    events = state.app.audit(limit=limit * 4)
    shown = [e for e in events if not (e["action"] in ACTIVITY_HIDDEN and e["outcome"] == "ok")]
    return shown[:limit]


def commands(detail: Detail) -> list[tuple[str, str]]:
    """What a user would run (the page never acts): (what it does, the command)."""
    name = detail.view.row.name
    return [
        ("renew it now and push the new version", f"certsync renew {name}"),
        ("push it again to every destination", f"certsync push {name}"),
        ("revoke it and issue a successor", f"certsync revoke {name} --reason superseded --replace"),
    ]


def adopt_command(found: dict) -> str:
    """The command that brings a discovered certificate under management (`certsync adopt`)."""
    cn = found["subject"].split("CN=", 1)[1].split(",", 1)[0] if "CN=" in found["subject"] else "found"
    name = "".join(ch if ch.isalnum() else "-" for ch in cn.lower()).strip("-")[:63] or "found"
    return f"certsync adopt {found['fingerprint']} --as {name} --profile PROFILE"
