"""Revocation: CRLs (RFC 5280 section 5) and OCSP responses (RFC 6960), signed by the issuing CA.

Pure library code: no store, no clock (`now` is a parameter), no I/O. The caller keeps the list of
revoked certificates and the CRL number; this module only turns them into signed structures.

* CRLs are full CRLs (no delta CRLs), so the reason `removeFromCRL` is refused: a certificate that
  is no longer revoked simply leaves the next CRL.
* OCSP responses are signed directly by the CA that issued the certificate (no delegated
  responder), the responder id is the SHA-1 hash of the CA's public key, and the request's CertID
  is echoed exactly (same hash algorithm) so that any client can match it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterable, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp

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
DEFAULT_OCSP_LIFETIME = timedelta(days=1)
_MAX_CRL_NUMBER = 2 ** 159  # RFC 5280 5.2.3: at most 20 octets, non-negative


def parse_reason(text: str) -> str:
    """The canonical RFC 5280 name for `text`: `keyCompromise`, `key-compromise`, `key_compromise`
    and `KEY_COMPROMISE` all give `keyCompromise`. Raises UsageError for anything else, and for
    `removeFromCRL`, which is not a reason to revoke."""
    folded = re.sub(r"[-_\s]", "", str(text)).lower()
    name = _BY_FOLDED.get(folded)
    if name == "removeFromCRL":
        raise UsageError("revocation reason removeFromCRL is only meaningful in delta CRLs and cannot "
                         "be used to revoke; allowed: " + ", ".join(REVOKE_REASONS))
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


def build_crl(issuer: certs.Issuer, revoked: Iterable[RevokedEntry], *, crl_number: int, now: datetime,
              next_update: timedelta = DEFAULT_CRL_LIFETIME) -> x509.CertificateRevocationList:
    """A full CRL for `issuer`, signed with its key.

    `crl_number` must increase with every CRL the caller publishes (RFC 5280 5.2.3); this function
    cannot know the previous one. Entries are sorted by serial; a serial listed twice is an error.
    """
    if not isinstance(crl_number, int) or not 0 <= crl_number < _MAX_CRL_NUMBER:
        raise ValueError("crl_number must be a non-negative integer of at most 20 octets")
    if next_update <= timedelta(0):
        raise ValueError("next_update must be a positive duration")
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.certificate.subject)
               .last_update(now)
               .next_update(now + next_update)
               .add_extension(_authority_key_identifier(issuer.certificate), critical=False)
               .add_extension(x509.CRLNumber(crl_number), critical=False))
    seen: set[int] = set()
    for entry in sorted(revoked, key=lambda e: e.serial):
        if entry.serial in seen:
            raise ValueError(f"serial {entry.serial:x} is listed twice")
        seen.add(entry.serial)
        revoked_cert = (x509.RevokedCertificateBuilder()
                        .serial_number(entry.serial)
                        .revocation_date(entry.revoked_at))
        # RFC 5280 5.3.1: the reason code unspecified (0) SHOULD be absent instead of used.
        if entry.reason != "unspecified":
            revoked_cert = revoked_cert.add_extension(x509.CRLReason(REASONS[entry.reason]), critical=False)
        builder = builder.add_revoked_certificate(revoked_cert.build())
    return builder.sign(issuer.key, certs.signature_hash(issuer.key))


# --- OCSP ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CertStatus:
    """What the CA knows about one serial: good, revoked (when, why) or unknown (never issued)."""
    state: Literal["good", "revoked", "unknown"]
    revoked_at: datetime | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.state not in ("good", "revoked", "unknown"):
            raise ValueError(f"unknown certificate status {self.state!r}")
        if (self.state == "revoked") != (self.revoked_at is not None):
            raise ValueError("revoked_at is required for, and only for, a revoked status")
        if self.state == "revoked":
            object.__setattr__(self, "reason", parse_reason(self.reason or "unspecified"))
        elif self.reason is not None:
            raise ValueError("a reason only goes with a revoked status")

    @classmethod
    def good(cls) -> "CertStatus":
        return cls("good")

    @classmethod
    def unknown(cls) -> "CertStatus":
        return cls("unknown")

    @classmethod
    def revoked(cls, at: datetime, reason: str = "unspecified") -> "CertStatus":
        return cls("revoked", at, reason)


StatusLookup = Callable[[int], CertStatus]
_OCSP_STATUS = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                "unknown": ocsp.OCSPCertStatus.UNKNOWN}


def ocsp_response(issuer: certs.Issuer, request_der: bytes, status_of: StatusLookup, *, now: datetime,
                  next_update: timedelta = DEFAULT_OCSP_LIFETIME) -> ocsp.OCSPResponse:
    """Answer one DER OCSP request (RFC 6960) on behalf of `issuer`.

    * undecodable request, or one with several CertIDs (cryptography handles one) -> malformedRequest
    * a CertID whose issuer name/key hashes are not this CA's -> unauthorized
    * otherwise a successful response for `status_of(serial)`, the request's nonce echoed.

    Exceptions from `status_of` propagate: a server maps them to internalError.
    """
    try:
        request = ocsp.load_der_ocsp_request(bytes(request_der))
        algorithm = request.hash_algorithm
        name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
        serial = request.serial_number
        nonce = _nonce_of(request)
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm):
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if (name_hash, key_hash) != issuer_hashes(issuer.certificate, algorithm):
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    return _signed_response(issuer, name_hash, key_hash, serial, algorithm, status_of(serial),
                            now=now, next_update=next_update, nonce=nonce)


def ocsp_response_for_cert(issuer: certs.Issuer, cert: x509.Certificate, status: CertStatus, now: datetime, *,
                           next_update: timedelta = DEFAULT_OCSP_LIFETIME, nonce: bytes | None = None,
                           algorithm: hashes.HashAlgorithm | None = None) -> ocsp.OCSPResponse:
    """A successful response for `cert` without a request (pre-generated responses, OCSP stapling,
    tests). The CertID uses `algorithm` (SHA-1 by default, what RFC 5019 clients send)."""
    if cert.issuer != issuer.certificate.subject:
        raise ValueError("the certificate was not issued by this CA")
    algorithm = algorithm or hashes.SHA1()
    name_hash, key_hash = issuer_hashes(issuer.certificate, algorithm)
    return _signed_response(issuer, name_hash, key_hash, cert.serial_number, algorithm, status,
                            now=now, next_update=next_update, nonce=nonce)


def issuer_hashes(ca_cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of an RFC 6960 CertID for certificates issued by `ca_cert`:
    the hash of the DER subject name and of the subjectPublicKey BIT STRING's value."""
    name = ca_cert.subject.public_bytes()
    key = _subject_public_key_bits(ca_cert.public_key())
    return _digest(algorithm, name), _digest(algorithm, key)


def _signed_response(issuer: certs.Issuer, name_hash: bytes, key_hash: bytes, serial: int,
                     algorithm: hashes.HashAlgorithm, status: CertStatus, *, now: datetime,
                     next_update: timedelta, nonce: bytes | None) -> ocsp.OCSPResponse:
    if next_update <= timedelta(0):
        raise ValueError("next_update must be a positive duration")
    revoked = status.state == "revoked"
    # As on the CRL, an unspecified reason is left out rather than stated.
    reason = REASONS[status.reason] if revoked and status.reason != "unspecified" else None
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(issuer_name_hash=name_hash, issuer_key_hash=key_hash,
                                     serial_number=serial, algorithm=algorithm,
                                     cert_status=_OCSP_STATUS[status.state], this_update=now,
                                     next_update=now + next_update,
                                     revocation_time=status.revoked_at if revoked else None,
                                     revocation_reason=reason)
               .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate))
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.sign(issuer.key, certs.signature_hash(issuer.key))


def _nonce_of(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI that matches the CA certificate's SKI (from its public key if it has none)."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _subject_public_key_bits(key: certs.PublicKey) -> bytes:
    # The contents of SubjectPublicKeyInfo.subjectPublicKey for each key type we issue with.
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raise ValueError(f"unsupported CA key {type(key).__name__}")


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()
