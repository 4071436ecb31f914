"""EST's enrolling operations: simpleenroll (a token), simplereenroll (the certificate being
renewed, over mTLS) and serverkeygen (a token; the key is made here and returned once).

Each issues inside one serialized transaction with `issue_from_csr`, the policy of `certsync sign`,
and records the outcome in the audit trail, refusals included (in a transaction of their own,
since the refused one rolls back).
"""

from __future__ import annotations

import secrets
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import Response

from sync.ca.issue import issue_from_csr
from sync.errors import AuthError, CertsyncError, Forbidden, PolicyError
from sync.pki import certs, est as encoding
from sync.pki import csr as csr_checks
from sync.server import auth, enroll_names, tls
from sync.server.state import ServerState
from sync.store import Certificate, Transaction

PKCS7_CERTS = "application/pkcs7-mime; smime-type=certs-only"


def simpleenroll(state: ServerState, request: Request, profile: str, body: bytes) -> Response:
    """RFC 7030 4.2.1: a token bound to the profile with the sign scope (Bearer, or Basic name:secret)."""
    principal = auth.authenticate(state, request, "sign", profile, protocol="est")
    with _audited(state, request, "certificate.enroll", principal.actor):
        der = encoding.decode(body)
        with state.transaction(serialized=True) as tx:
            name = enroll_names.store_name(state.config, tx, profile, der)
            row = issue_from_csr(state.config, tx, name, profile, der, state.now)
            _record(state, tx, request, "certificate.enroll", principal.actor, row)
            cert = row.certificate
    state.enrolled("est", row.name, profile)
    return _certificate_response(cert)


def simplereenroll(state: ServerState, request: Request, profile: str, body: bytes) -> Response:
    """RFC 7030 4.2.2: the client's current certificate (verified by the TLS handshake, or by the
    trusted proxy's header) must be one of the store's, active, unexpired and of this profile; the
    CSR asks for the same subject and SAN; the result is the next version of the same name."""
    presented = auth.client_certificate(state, request)
    if presented is None:
        state.metrics.denied.labels("est").inc()
        raise AuthError("simplereenroll needs the current certificate as the TLS client certificate")
    actor = f"cert:{presented.serial_number:x}"
    with _audited(state, request, "certificate.reenroll", actor):
        csr = csr_checks.load_csr(encoding.decode(body))
        with state.transaction(serialized=True) as tx:
            current = _current(tx, presented, profile, state)
            _same_names(csr, presented)
            row = issue_from_csr(
                state.config, tx, current.name, current.profile, csr.public_bytes(serialization.Encoding.DER), state.now
            )
            _record(state, tx, request, "certificate.reenroll", actor, row, previous=current.serial)
            cert = row.certificate
    state.enrolled("est", row.name, current.profile)
    return _certificate_response(cert)


def serverkeygen(state: ServerState, request: Request, profile: str, body: bytes) -> Response:
    """RFC 7030 4.4: a token with the issue scope; the CSR names what to certify, the key is made
    here (the profile's key type), never stored, and returned once as PKCS#8 beside the certificate."""
    principal = auth.authenticate(state, request, "issue", profile, protocol="est")
    with _audited(state, request, "certificate.serverkeygen", principal.actor):
        key = certs.generate_key(state.config.profile[profile].key)
        der = encoding.server_key_request(encoding.decode(body), key)
        with state.transaction(serialized=True) as tx:
            name = enroll_names.store_name(state.config, tx, profile, der)
            row = issue_from_csr(state.config, tx, name, profile, der, state.now)
            _record(state, tx, request, "certificate.serverkeygen", principal.actor, row)
            cert = row.certificate
    state.enrolled("est", row.name, profile)
    key_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _multipart([("application/pkcs8", key_der), (PKCS7_CERTS, encoding.certs_only([cert]))])


# -- re-enrollment checks -----------------------------------------------------------------------------
def _current(tx: Transaction, presented: x509.Certificate, profile: str, state: ServerState) -> Certificate:
    """The store's row of the presented certificate, usable for re-enrollment under `profile`."""
    row = tx.certificates.by_serial(presented.serial_number)
    if row is None or row.cert_der != presented.public_bytes(serialization.Encoding.DER):
        raise AuthError("the client certificate is not one certsync issued")
    if row.state != "active":
        raise AuthError(
            f"the client certificate (serial {row.serial}) is {row.state}; only the current "
            "version of a certificate may re-enroll"
        )
    if row.not_after <= state.now:
        raise AuthError(f"the client certificate (serial {row.serial}) expired; enroll anew with simpleenroll")
    if row.profile != profile:
        raise Forbidden(f"the client certificate is of profile {row.profile!r}, not {profile!r}")
    return row


def _same_names(csr: x509.CertificateSigningRequest, presented: x509.Certificate) -> None:
    """RFC 7030 4.2.2: Subject and SubjectAltName identical to the certificate's."""
    try:
        same_subject = csr.subject == presented.subject
    except ValueError:
        raise PolicyError("simplereenroll: the CSR's subject is malformed") from None
    if not same_subject:
        raise PolicyError(
            f"simplereenroll: the CSR's subject {csr.subject.rfc4514_string()!r} differs from the "
            f"certificate's {presented.subject.rfc4514_string()!r} (use simpleenroll for new names)"
        )
    if _san(csr) != _san(presented):
        raise PolicyError(
            "simplereenroll: the CSR's subjectAltName differs from the certificate's (use simpleenroll for new names)"
        )


def _san(item: x509.Certificate | x509.CertificateSigningRequest) -> set[x509.GeneralName]:
    try:
        return set(item.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return set()
    except (ValueError, x509.DuplicateExtension):
        raise PolicyError("simplereenroll: the CSR's extensions are malformed") from None


# -- audit and responses ----------------------------------------------------------------------------------
def _record(
    state: ServerState, tx: Transaction, request: Request, action: str, actor: str, row: Certificate, **detail: str
) -> None:
    tx.audit.record(
        at=state.now,
        actor=actor,
        action=action,
        protocol="est",
        certificate=row.name,
        serial=row.serial,
        remote_addr=tls.peer_address(request, state.server.trusted_proxies),
        detail={"version": row.version, "profile": row.profile, **detail},
    )


class _audited:
    """Records a refusal (the enrolling transaction has rolled back) and counts it; re-raises."""

    def __init__(self, state: ServerState, request: Request, action: str, actor: str) -> None:
        self.state, self.request, self.action, self.actor = state, request, action, actor

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> Literal[False]:
        if isinstance(exc, CertsyncError):
            self.state.metrics.denied.labels("est").inc()
            address = tls.peer_address(self.request, self.state.server.trusted_proxies)
            try:
                with self.state.transaction() as tx:
                    tx.audit.record(
                        at=self.state.now,
                        actor=self.actor,
                        action=self.action,
                        protocol="est",
                        outcome="denied",
                        remote_addr=address,
                        detail={"path": self.request.url.path, "reason": exc.message},
                    )
            except CertsyncError:
                pass  # the refusal itself is what the client must get
        return False


def _certificate_response(cert: x509.Certificate) -> Response:
    return Response(
        encoding.encode(encoding.certs_only([cert])),
        media_type=PKCS7_CERTS,
        headers={"Content-Transfer-Encoding": "base64"},
    )


def _multipart(parts: list[tuple[str, bytes]]) -> Response:
    """multipart/mixed (RFC 2046), each part base64 (RFC 7030 4.4.2)."""
    boundary = "est-" + secrets.token_hex(12)
    body = b""
    for media_type, der in parts:
        body += (
            f"--{boundary}\r\nContent-Type: {media_type}\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
            + encoding.encode(der)
        )
    body += f"--{boundary}--\r\n".encode()
    return Response(
        body, media_type=f"multipart/mixed; boundary={boundary}", headers={"Cache-Control": "no-store"}
    )  # a private key: no cache keeps it
