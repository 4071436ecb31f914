"""Revocation against the store: mark certificates revoked, keep each CA's CRL current,
answer OCSP requests from what the store knows."""
from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy.orm import Session

from sync import revocation
from sync.config import Config
from sync.enroll import issuer_for
from sync.errors import NotFound, UsageError
from sync.store import Authority, Certificate, Store


def revoke(config: Config, store: Store, session: Session, name: str, reason: str, *, now: datetime,
           serial: str | None = None) -> Certificate:
    """Revoke the active version of `name` (or the version with `serial`) and reissue its CA's CRL."""
    reason = revocation.parse_reason(reason)
    versions = store.latest_versions_of(session, name)
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
    store.revoke(row, reason, now)
    session.flush()
    publish_crl(config, store, session, row.authority.name, now=now)
    return row


def publish_crl(config: Config, store: Store, session: Session, ca_name: str, *,
                now: datetime) -> x509.CertificateRevocationList:
    """Sign a new CRL for `ca_name` with the next CRL number and keep it as the current one."""
    authority, issuer = issuer_for(config, store, session, ca_name)
    # Lock the CA's row first (PostgreSQL: SELECT ... FOR UPDATE; SQLite has one writer anyway), so
    # two publishers cannot both sign CRL number n+1, and the entries read next are the latest.
    session.refresh(authority, with_for_update=True)
    entries = [revocation.RevokedEntry(int(c.serial, 16), c.revoked_at, c.revocation_reason or "unspecified")
               for c in store.revoked_by(session, authority, now)]
    authority.crl_number = (authority.crl_number or 0) + 1
    crl = revocation.build_crl(issuer, entries, crl_number=authority.crl_number, now=now,
                               next_update=config.ca[ca_name].crl_lifetime)
    authority.crl_der = crl.public_bytes(Encoding.DER)
    return crl


def current_crl(config: Config, store: Store, session: Session, ca_name: str, *,
                now: datetime) -> x509.CertificateRevocationList:
    """The CA's current CRL; a new one (next number) when there is none or it is past half its life."""
    if ca_name not in config.ca:
        raise UsageError(f"unknown CA {ca_name!r} (defined: {', '.join(sorted(config.ca))})")
    authority = _authority(store, session, ca_name)
    if authority.crl_der is not None:
        crl = x509.load_der_x509_crl(authority.crl_der)
        life = crl.next_update_utc - crl.last_update_utc
        if now < crl.last_update_utc + life / 2:
            return crl
    return publish_crl(config, store, session, ca_name, now=now)


def ocsp_respond(config: Config, store: Store, session: Session, ca_name: str, request_der: bytes, *,
                 now: datetime) -> ocsp.OCSPResponse:
    """An RFC 6960 response signed by the CA: good, revoked (time, reason) or unknown."""
    authority, issuer = issuer_for(config, store, session, ca_name)

    def status_of(serial: int) -> revocation.CertStatus:
        row = store.by_serial(session, serial)
        if row is None or row.authority_id != authority.id:
            return revocation.CertStatus.unknown()
        if row.state == "revoked":
            return revocation.CertStatus.revoked(row.revoked_at, row.revocation_reason or "unspecified")
        return revocation.CertStatus.good()

    return revocation.ocsp_response(issuer, request_der, status_of, now=now)


def _authority(store: Store, session: Session, ca_name: str) -> Authority:
    row = store.authority(session, ca_name)
    if row is None:
        raise NotFound(f"CA {ca_name!r} is not in the store: run `certsync init`")
    return row

