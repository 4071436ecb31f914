"""OCSP responses (RFC 6960), signed by the CA that issued the certificate.

Pure library code: no store, no clock, no I/O; the caller answers "what is the status of this
serial". Responses are signed by the CA itself or by a delegated responder (a certificate the CA
issued with id-kp-OCSPSigning, included in the response so clients can check it); the responder id
is the SHA-1 hash of the signer's public key, and the request's CertID is echoed exactly (same hash
algorithm) so that any client can match it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp

from sync.pki import certs
from sync.pki.crl import REASONS, parse_reason

DEFAULT_OCSP_LIFETIME = timedelta(days=1)


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
    def good(cls) -> CertStatus:
        return cls("good")

    @classmethod
    def unknown(cls) -> CertStatus:
        return cls("unknown")

    @classmethod
    def revoked(cls, at: datetime, reason: str = "unspecified") -> CertStatus:
        return cls("revoked", at, reason)


StatusLookup = Callable[[int], CertStatus]


@dataclass(frozen=True)
class Responder:
    """A delegated OCSP signer: its certificate (issued by the CA, id-kp-OCSPSigning) and key."""

    certificate: x509.Certificate
    key: certs.PrivateKey


_OCSP_STATUS = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}


def ocsp_response(
    issuer: certs.Issuer,
    request_der: bytes,
    status_of: StatusLookup,
    *,
    now: datetime,
    next_update: timedelta = DEFAULT_OCSP_LIFETIME,
    responder: Responder | None = None,
) -> ocsp.OCSPResponse:
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
    return _signed_response(
        issuer,
        name_hash,
        key_hash,
        serial,
        algorithm,
        status_of(serial),
        now=now,
        next_update=next_update,
        nonce=nonce,
        responder=responder,
    )


def ocsp_response_for_cert(
    issuer: certs.Issuer,
    cert: x509.Certificate,
    status: CertStatus,
    now: datetime,
    *,
    next_update: timedelta = DEFAULT_OCSP_LIFETIME,
    nonce: bytes | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> ocsp.OCSPResponse:
    """A successful response for `cert` without a request (pre-generated responses, OCSP stapling,
    tests). The CertID uses `algorithm` (SHA-1 by default, what RFC 5019 clients send)."""
    if cert.issuer != issuer.certificate.subject:
        raise ValueError("the certificate was not issued by this CA")
    algorithm = algorithm or hashes.SHA1()  # noqa: S303  RFC 5019 2.1.1: CertIDs use SHA-1
    name_hash, key_hash = issuer_hashes(issuer.certificate, algorithm)
    return _signed_response(
        issuer,
        name_hash,
        key_hash,
        cert.serial_number,
        algorithm,
        status,
        now=now,
        next_update=next_update,
        nonce=nonce,
    )


def issuer_hashes(ca_cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of an RFC 6960 CertID for certificates issued by `ca_cert`:
    the hash of the DER subject name and of the subjectPublicKey BIT STRING's value."""
    name = ca_cert.subject.public_bytes()
    key = _subject_public_key_bits(ca_cert.public_key())
    return _digest(algorithm, name), _digest(algorithm, key)


def _signed_response(
    issuer: certs.Issuer,
    name_hash: bytes,
    key_hash: bytes,
    serial: int,
    algorithm: hashes.HashAlgorithm,
    status: CertStatus,
    *,
    now: datetime,
    next_update: timedelta,
    nonce: bytes | None,
    responder: Responder | None = None,
) -> ocsp.OCSPResponse:
    if next_update <= timedelta(0):
        raise ValueError("next_update must be a positive duration")
    revoked = status.state == "revoked"
    # As on the CRL, an unspecified reason is left out rather than stated.
    reason = REASONS[status.reason] if revoked and status.reason and status.reason != "unspecified" else None
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=serial,
            algorithm=algorithm,
            cert_status=_OCSP_STATUS[status.state],
            this_update=now,
            next_update=now + next_update,
            revocation_time=status.revoked_at if revoked else None,
            revocation_reason=reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate if responder else issuer.certificate)
    )
    if responder is not None:
        builder = builder.certificates([responder.certificate])
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    signer = responder.key if responder else issuer.key
    return builder.sign(signer, certs.signature_hash(signer))


def _nonce_of(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _subject_public_key_bits(key: certs.AnyPublicKey) -> bytes:
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
