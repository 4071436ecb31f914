"""CRLs (RFC 5280 section 5), signed by the issuing CA, and the revocation reasons.

Pure library code: no store, no clock (`now` is a parameter), no I/O. The caller keeps the list of
revoked certificates and the CRL number; this module only turns them into a signed CRL. CRLs are
full CRLs (no delta CRLs), so the reason `removeFromCRL` is refused: a certificate that is no
longer revoked simply leaves the next CRL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from collections.abc import Iterable

from cryptography import x509

from sync.errors import UsageError
from sync.pki import certs

# RFC 5280 5.3.1 CRLReason names (the ASN.1 enumeration's identifiers) -> cryptography's flags.
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "removeFromCRL": x509.ReasonFlags.remove_from_crl,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}
# Reasons a certificate can be revoked with (removeFromCRL only exists in delta CRLs).
REVOKE_REASONS = tuple(name for name in REASONS if name != "removeFromCRL")
_BY_FOLDED = {name.lower(): name for name in REASONS}

DEFAULT_CRL_LIFETIME = timedelta(days=7)
_MAX_CRL_NUMBER = 2**159  # RFC 5280 5.2.3: at most 20 octets, non-negative


def parse_reason(text: str) -> str:
    """The canonical RFC 5280 name for `text`: `keyCompromise`, `key-compromise`, `key_compromise`
    and `KEY_COMPROMISE` all give `keyCompromise`. Raises UsageError for anything else, and for
    `removeFromCRL`, which is not a reason to revoke."""
    folded = re.sub(r"[-_\s]", "", str(text)).lower()
    name = _BY_FOLDED.get(folded)
    if name == "removeFromCRL":
        raise UsageError(
            "revocation reason removeFromCRL is only meaningful in delta CRLs and cannot "
            "be used to revoke; allowed: " + ", ".join(REVOKE_REASONS)
        )
    if name is None:
        raise UsageError(f"unknown revocation reason {text!r}; allowed: {', '.join(REVOKE_REASONS)}")
    return name


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked certificate as it appears on the CRL. `reason` is normalised by parse_reason."""

    serial: int
    revoked_at: datetime
    reason: str = "unspecified"

    def __post_init__(self) -> None:
        if not isinstance(self.serial, int) or self.serial <= 0:
            raise ValueError(f"serial must be a positive integer, not {self.serial!r}")
        object.__setattr__(self, "reason", parse_reason(self.reason))


def build_crl(
    issuer: certs.Issuer,
    revoked: Iterable[RevokedEntry],
    *,
    crl_number: int,
    now: datetime,
    next_update: timedelta = DEFAULT_CRL_LIFETIME,
) -> x509.CertificateRevocationList:
    """A full CRL for `issuer`, signed with its key.

    `crl_number` must increase with every CRL the caller publishes (RFC 5280 5.2.3); this function
    cannot know the previous one. Entries are sorted by serial; a serial listed twice is an error.
    """
    if not isinstance(crl_number, int) or not 0 <= crl_number < _MAX_CRL_NUMBER:
        raise ValueError("crl_number must be a non-negative integer of at most 20 octets")
    if next_update <= timedelta(0):
        raise ValueError("next_update must be a positive duration")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now)
        .next_update(now + next_update)
        .add_extension(_authority_key_identifier(issuer.certificate), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    seen: set[int] = set()
    for entry in sorted(revoked, key=lambda e: e.serial):
        if entry.serial in seen:
            raise ValueError(f"serial {entry.serial:x} is listed twice")
        seen.add(entry.serial)
        revoked_cert = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
        # RFC 5280 5.3.1: the reason code unspecified (0) SHOULD be absent instead of used.
        if entry.reason != "unspecified":
            revoked_cert = revoked_cert.add_extension(x509.CRLReason(REASONS[entry.reason]), critical=False)
        builder = builder.add_revoked_certificate(revoked_cert.build())
    return builder.sign(issuer.key, certs.signature_hash(issuer.key))


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI that matches the CA certificate's SKI (from its public key if it has none)."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(certs.public_key_of(ca_cert))
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
