"""Revocation against the store: mark versions revoked, keep each CA's CRL current, and answer
OCSP requests from what the store knows. The signed structures are built by sync.pki.crl and sync.pki.ocsp."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from sync.ca.hierarchy import issuer_for
from sync.errors import NotFound, StoreError, UsageError
from sync.pki import certs, crl as crls, ocsp as ocsp_responses
from sync.store import Authority, Certificate, Transaction

if TYPE_CHECKING:
    from sync.config import Config


def revoke(
    config: Config, tx: Transaction, name: str, reason: str, now: datetime, *, serial: str | None = None
) -> tuple[Certificate, list[Certificate]]:
    """Revoke the active version of `name` (or the version with `serial`) and reissue its CA's CRL.
    Returns (that version, the others revoked with it).

    keyCompromise revokes the key, not one version: every unexpired version of any certificate
    holding the same public key (older versions under key_rotation = "reuse", a CSR enrolled with
    it under another name) is revoked too, each CA concerned reissues its CRL, and the key is
    recorded as compromised so that no later issuance certifies it again."""
    reason = crls.parse_reason(reason)
    versions = tx.certificates.versions_of(name)
    if not versions:
        raise NotFound(f"certificate {name!r} is not in the store")
    if serial is not None:
        row = next((v for v in versions if v.serial == serial.lower().removeprefix("0x")), None)
        if row is None:
            raise UsageError(f"--serial: certificate {name!r} has no version with serial {serial}")
    else:
        row = next((v for v in versions if v.state == "active"), None)
        if row is None:
            raise UsageError(f"certificate {name!r} has no active version to revoke (use --serial for an older one)")
    if row.state == "revoked":
        raise UsageError(f"certificate {name!r} serial {row.serial} is already revoked ({row.revocation_reason})")
    others: list[Certificate] = []
    if reason == "keyCompromise":
        key = certs.spki_sha256(row.certificate.public_key())
        others = [c for c in tx.certificates.holding_key(key, now) if c.id != row.id]
        tx.certificates.record_compromised(key, reason, now, row)
    for victim in (row, *others):
        tx.certificates.revoke(victim, reason, now)
    for ca_name in dict.fromkeys(c.authority.name for c in (row, *others)):
        if ca_name in config.ca:  # a CA no longer configured has no CRL to publish
            publish_crl(config, tx, ca_name, now)
    return row, others


def publish_crl(config: Config, tx: Transaction, ca_name: str, now: datetime) -> x509.CertificateRevocationList:
    """Sign a new CRL for `ca_name` with the next CRL number and keep it as the current one.
    tx must be serialized (store.transaction(serialized=True)): the CA's row is locked before the
    number and the entries are read, so two publishers never sign one number."""
    authority = _authority(tx, ca_name)
    tx.authorities.lock_for_crl(authority)  # no two CRLs with one number; entries read next are the latest
    previous = _stored(authority)
    if previous is not None and previous.last_update_utc > now:
        now = previous.last_update_utc  # a later number is never older than the CRL it replaces
    authority, issuer = issuer_for(config, tx, ca_name)
    entries = [
        crls.RevokedEntry(int(c.serial, 16), _revoked_at(c), c.revocation_reason or "unspecified")
        for c in tx.certificates.revoked_by(authority, now)
    ]
    number = (authority.crl_number or 0) + 1
    the_crl = crls.build_crl(issuer, entries, crl_number=number, now=now, next_update=config.ca[ca_name].crl_lifetime)
    tx.authorities.record_crl(authority, number, the_crl.public_bytes(Encoding.DER))
    return the_crl


def fresh_crl(config: Config, tx: Transaction, ca_name: str, now: datetime) -> x509.CertificateRevocationList | None:
    """The CA's current CRL while it is in the first half of its life, else None. Reads only (no
    lock, no key): a CRL found here is one a publisher committed."""
    _check_ca(config, ca_name)
    return _fresh(_authority(tx, ca_name), now)


def current_crl(config: Config, tx: Transaction, ca_name: str, now: datetime) -> x509.CertificateRevocationList:
    """The CA's current CRL; a new one (next number) when there is none or it is past half its
    life. tx must be serialized: the decision to publish is taken on the CRL read under the CA's
    lock, so a publisher never replaces a CRL it has not seen (e.g. the one a revocation just made).
    Only signing a new CRL opens the CA's key."""
    _check_ca(config, ca_name)
    authority = _authority(tx, ca_name)
    tx.authorities.lock_for_crl(authority)
    return _fresh(authority, now) or publish_crl(config, tx, ca_name, now)


def _check_ca(config: Config, ca_name: str) -> None:
    if ca_name not in config.ca:
        raise UsageError(f"unknown CA {ca_name!r} (defined: {', '.join(sorted(config.ca))})")


def _stored(authority: Authority) -> x509.CertificateRevocationList | None:
    return x509.load_der_x509_crl(authority.crl_der) if authority.crl_der is not None else None


def _revoked_at(row: Certificate) -> datetime:
    if row.revoked_at is None:  # revoking sets state and time together
        raise StoreError(f"certificate {row.name!r} version {row.version} is revoked but has no revocation time")
    return row.revoked_at


def _fresh(authority: Authority, now: datetime) -> x509.CertificateRevocationList | None:
    crl = _stored(authority)
    if (
        crl is not None
        and crl.next_update_utc is not None
        and now < crl.last_update_utc + (crl.next_update_utc - crl.last_update_utc) / 2
    ):
        return crl
    return None


def ocsp_respond(
    config: Config,
    tx: Transaction,
    ca_name: str,
    request_der: bytes,
    now: datetime,
    *,
    responder: ocsp_responses.Responder | None = None,
    lifetime: timedelta = ocsp_responses.DEFAULT_OCSP_LIFETIME,
) -> ocsp.OCSPResponse:
    """An RFC 6960 response: good, revoked (time, reason) or unknown; signed by `responder` (a
    delegated signer, see ocsp_signer) or, without one, by the CA (which opens its key)."""
    _check_ca(config, ca_name)
    if responder is not None:
        authority, issuer = _authority(tx, ca_name), None
    else:
        authority, issuer = issuer_for(config, tx, ca_name)

    def status_of(serial: int) -> ocsp_responses.CertStatus:
        row = tx.certificates.by_serial(serial)
        if row is None or row.authority_id != authority.id:
            return ocsp_responses.CertStatus.unknown()
        if row.state == "revoked":
            return ocsp_responses.CertStatus.revoked(_revoked_at(row), row.revocation_reason or "unspecified")
        return ocsp_responses.CertStatus.good()

    if issuer is None:  # delegated: the CA's certificate identifies it, its key stays sealed
        issuer = certs.Issuer(tx.authorities.checked(authority), _NO_KEY)
    return ocsp_responses.ocsp_response(
        issuer, request_der, status_of, now=now, next_update=lifetime, responder=responder
    )


_NO_KEY: Any = None  # an Issuer used only for its certificate (the responder signs)


def ocsp_signer(
    config: Config, tx: Transaction, ca_name: str, validity: timedelta, now: datetime
) -> ocsp_responses.Responder:
    """A fresh delegated OCSP signer for `ca_name`: a new key (never stored: each server process
    holds its own, and makes a new one when half its life has passed) certified by the CA."""
    _check_ca(config, ca_name)
    _, issuer = issuer_for(config, tx, ca_name)
    key = certs.generate_key("ec-p256")
    return ocsp_responses.Responder(certs.issue_ocsp_signer(issuer, key.public_key(), validity, now=now), key)


def _authority(tx: Transaction, ca_name: str) -> Authority:
    row = tx.authorities.active(ca_name)
    if row is None:
        raise NotFound(f"CA {ca_name!r} is not in the store: run `certsync init`")
    return row
