"""What discovery records about a certificate it finds: facts only (never a key, never the value
of the secret or file it came from), and what is wrong with it.

Pure: no store, no I/O. Certificates of any origin are read, so nothing here assumes certsync's
own key types: RSA of any size, any EC curve, EdDSA, DSA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from sync.pki.certs import AnyPublicKey

WEAK_RSA_BITS = 2048  # below: weak (NIST SP 800-131A)
WEAK_EC_BITS = 224


@dataclass(frozen=True)
class CertificateFacts:
    fingerprint: str  # SHA-256 of the DER, hex: the identity of a found certificate
    subject: str  # RFC 4514
    issuer: str
    serial: str  # hex, lower case, no leading zeros
    sans: list[str] = field(default_factory=list)  # DNS:name, IP:address, as the store writes them
    not_before: datetime | None = None
    not_after: datetime | None = None
    key_type: str = ""  # rsa, ec-p256, ec-secp521r1, ed25519, dsa, ...
    key_size: int = 0
    signature_algorithm: str = ""  # e.g. sha256WithRSAEncryption, ecdsa-with-SHA256
    self_signed: bool = False
    is_ca: bool = False

    @property
    def common_name(self) -> str | None:
        for part in self.subject.split(","):
            if part.upper().startswith("CN="):
                return part[3:]
        return None


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def facts_of(cert: x509.Certificate) -> CertificateFacts:
    key_type, key_size = describe_key(cert.public_key())
    return CertificateFacts(
        fingerprint=fingerprint(cert),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        sans=san_strings(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=_signature_name(cert),
        self_signed=_self_signed(cert),
        is_ca=_is_ca(cert),
    )


def describe_key(key: AnyPublicKey) -> tuple[str, int]:
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}.get(
            key.curve.name, f"ec-{key.curve.name}"
        )
        return name, key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    return type(key).__name__, 0


def san_strings(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [f"DNS:{n}" for n in sans.get_values_for_type(x509.DNSName)] + [
        f"IP:{n}" for n in sans.get_values_for_type(x509.IPAddress)
    ]


def _signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    return getattr(oid, "_name", None) or oid.dotted_string


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
        return True
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):  # SHA-1, MD5, DSA...: cannot check; the names say so
        return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False


def problems(f: CertificateFacts, now: datetime, expiring_within: timedelta) -> list[str]:
    """What an alert says about a found certificate: expired, expiring, weak-key, sha1."""
    found = []
    if f.not_after is not None and f.not_after <= now:
        found.append("expired")
    elif f.not_after is not None and f.not_after <= now + expiring_within:
        found.append("expiring")
    if (
        (f.key_type == "rsa" and f.key_size < WEAK_RSA_BITS)
        or f.key_type == "dsa"
        or (f.key_type.startswith("ec-") and f.key_size < WEAK_EC_BITS)
    ):
        found.append("weak-key")
    if "sha1" in f.signature_algorithm.lower() or "md5" in f.signature_algorithm.lower():
        found.append("weak-signature")
    return found
