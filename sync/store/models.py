"""The store's tables (SQLAlchemy 2 declarative models), portable to SQLite and PostgreSQL.

Only portable column types are used, so one schema serves both backends. Schema changes go
through sync/store/migrations (a new revision; tests/store checks it matches these models).
Only the store package touches these classes; everything else goes through its repositories.
"""

from __future__ import annotations

from datetime import datetime, UTC

from cryptography import x509
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    # Schema changes go through sync/store/migrations (a new revision; tests/store checks it matches).
    # No constraint naming convention: stores made before migrations have the backends' default
    # names, and the initial revision keeps them (a later revision dropping an unnamed SQLite
    # constraint passes naming_convention to batch_alter_table).
    pass


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class Authority(Base):
    __tablename__ = "authorities"
    __table_args__ = (UniqueConstraint("name", "generation"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("authorities.id"))
    subject: Mapped[str] = mapped_column(String(1024))
    key_type: Mapped[str] = mapped_column(String(16))
    serial: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    cert_der: Mapped[bytes] = mapped_column(LargeBinary)
    cert_tag: Mapped[bytes | None] = mapped_column(LargeBinary)  # integrity tag (keyring); 0004
    key_enc: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    crl_number: Mapped[int] = mapped_column(Integer, default=0)  # of the last CRL issued
    crl_der: Mapped[bytes | None] = mapped_column(LargeBinary)  # the last CRL issued
    parent: Mapped[Authority | None] = relationship(remote_side="Authority.id")

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der)


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    version: Mapped[int] = mapped_column(Integer)
    profile: Mapped[str] = mapped_column(String(63))
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    common_name: Mapped[str | None] = mapped_column(String(255))
    sans: Mapped[list] = mapped_column(JSON)
    key_type: Mapped[str] = mapped_column(String(16))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default="active")  # active|superseded|revoked|retired
    cert_der: Mapped[bytes] = mapped_column(LargeBinary)
    cert_tag: Mapped[bytes | None] = mapped_column(LargeBinary)  # integrity tag (keyring); None before 0004
    key_enc: Mapped[bytes | None] = mapped_column(LargeBinary)  # None for CSR enrollments
    source: Mapped[str] = mapped_column(String(8), default="config")  # config | csr
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    authority: Mapped[Authority] = relationship()

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der)


class CompromisedKey(Base):
    """A public key revoked for keyCompromise (revision 0004): every unexpired certificate holding
    it is revoked, and no later issuance (renewal reusing it, CSR carrying it) certifies it again."""

    __tablename__ = "compromised_keys"
    spki_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex SHA-256 of the SPKI
    reason: Mapped[str] = mapped_column(String(32))
    compromised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cert_name: Mapped[str] = mapped_column(String(63))  # the certificate revoked when it was found
    serial: Mapped[str] = mapped_column(String(64))


class Deployment(Base):
    """What certsync last wrote to one remote secret."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("destination", "remote_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cert_name: Mapped[str] = mapped_column(String(63), index=True)
    destination: Mapped[str] = mapped_column(String(63))
    remote_name: Mapped[str] = mapped_column(String(512))
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    remote_version: Mapped[str | None] = mapped_column(String(128))
    pushed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default="present")  # present|deleted
    one_off: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # see migration 0003


class Lock(Base):
    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # revision 0002


class ApiToken(Base):
    """A credential for `certsync serve` (REST API bearer, EST Basic password): only its SHA-256 is
    kept (revision 0005); the token itself is shown once, when created."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # hex
    profile: Mapped[str] = mapped_column(String(63))
    scopes: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Who did what through the server, when and from where (revision 0005). Never a secret."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(255))  # token:NAME, acme:ACCOUNT, cert:SERIAL, cli
    action: Mapped[str] = mapped_column(String(32))  # issue, sign, renew, revoke, token.use, ...
    protocol: Mapped[str] = mapped_column(String(16))  # api, est, acme, cli
    outcome: Mapped[str] = mapped_column(String(16))  # ok, denied, failed
    certificate: Mapped[str | None] = mapped_column(String(63), index=True)
    serial: Mapped[str | None] = mapped_column(String(64))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict | None] = mapped_column(JSON)


class DiscoveredCertificate(Base):
    """A certificate found by `certsync discover` (revision 0006): facts only, never a key or the
    value it was found in."""

    __tablename__ = "discovered_certificates"
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the DER, hex
    subject: Mapped[str] = mapped_column(String(1024))
    issuer: Mapped[str] = mapped_column(String(1024))
    serial: Mapped[str] = mapped_column(String(64))
    sans: Mapped[list] = mapped_column(JSON)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    key_type: Mapped[str] = mapped_column(String(32))
    key_size: Mapped[int] = mapped_column(Integer)
    signature_algorithm: Mapped[str] = mapped_column(String(64))
    self_signed: Mapped[bool] = mapped_column(Boolean)
    is_ca: Mapped[bool] = mapped_column(Boolean)
    managed: Mapped[bool] = mapped_column(Boolean)  # issued by certsync (its CA and a serial it holds)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)


class DiscoveryLocation(Base):
    """Where a found certificate was seen: tls://host:port[/sni], file:///path[#n], aws:DEST/NAME, ..."""

    __tablename__ = "discovery_locations"
    __table_args__ = (UniqueConstraint("location", "fingerprint"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(ForeignKey("discovered_certificates.fingerprint"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # tls | file | aws | gcp | azure
    location: Mapped[str] = mapped_column(String(1024))
    position: Mapped[int] = mapped_column(Integer, default=0)  # 0: the leaf / first certificate there
    details: Mapped[dict] = mapped_column(JSON)  # chain verifies, hostname matches, protocol, ...
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    gone_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


# -- ACME (revision 0007): what one server replica hands to another through the store ---------------
class AcmeAccount(Base):
    """An ACME account: its public key (JWK) and which profile's directory it belongs to."""

    __tablename__ = "acme_accounts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    profile: Mapped[str] = mapped_column(String(63))
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)  # RFC 7638, base64url SHA-256
    jwk: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # valid | deactivated
    contact: Mapped[list] = mapped_column(JSON)
    eab_kid: Mapped[str | None] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AcmeOrder(Base):
    __tablename__ = "acme_orders"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("acme_accounts.id"), index=True)
    profile: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16))  # pending | ready | processing | valid | invalid
    identifiers: Mapped[list] = mapped_column(JSON)  # ["a.example.internal", ...] (dns)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    error: Mapped[dict | None] = mapped_column(JSON)
    certificate_serial: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AcmeAuthorization(Base):
    __tablename__ = "acme_authorizations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("acme_orders.id"), index=True)
    identifier: Mapped[str] = mapped_column(String(255))  # the name without "*."
    wildcard: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))  # pending | valid | invalid | deactivated
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AcmeChallenge(Base):
    __tablename__ = "acme_challenges"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    authz_id: Mapped[str] = mapped_column(ForeignKey("acme_authorizations.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # http-01 | dns-01
    token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # pending | processing | valid | invalid
    validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[dict | None] = mapped_column(JSON)


class AcmeNonce(Base):
    """An unused Replay-Nonce: deleted when used, so a second use (on any replica) finds nothing."""

    __tablename__ = "acme_nonces"
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AcmeEabKey(Base):
    """An External Account Binding key: its MAC key sealed under the master key, bound to one account once used."""

    __tablename__ = "acme_eab_keys"
    kid: Mapped[str] = mapped_column(String(63), primary_key=True)
    profile: Mapped[str] = mapped_column(String(63))
    key_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    account_id: Mapped[str | None] = mapped_column(String(32))


class QuotaBudget(Base):
    """A quota domain's shared budget (revision 0008): when its token bucket is (or will be) empty,
    in seconds on the store's clock (GCRA). Runners on one store reserve from it; see
    sync/store/budgets.py."""

    __tablename__ = "quota_budgets"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    empty_at: Mapped[float] = mapped_column(Float)
