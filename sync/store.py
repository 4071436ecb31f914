"""The certificate store: SQLAlchemy 2, SQLite by default, portable to PostgreSQL.

It records CAs (every generation), certificates (every version with serial, validity and state)
and, per destination, what was last pushed (payload fingerprint, provider version id, time).
Private keys are stored only as AES-256-GCM blobs (see keyring). Only portable column types are
used (no SQLite- or PostgreSQL-only features), so the same schema serves both.
"""
from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import (JSON, DateTime, ForeignKey, Integer, LargeBinary, String, TypeDecorator,
                        UniqueConstraint, create_engine, delete, event, select)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from sync import keyring
from sync.ca import Issuer, utcnow
from sync.errors import LockError, MasterKeyError, StoreError


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
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
    key_enc: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    crl_number: Mapped[int] = mapped_column(Integer, default=0)     # of the last CRL issued
    crl_der: Mapped[bytes | None] = mapped_column(LargeBinary)      # the last CRL issued
    parent: Mapped["Authority | None"] = relationship(remote_side="Authority.id")

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
    key_enc: Mapped[bytes | None] = mapped_column(LargeBinary)  # None for CSR enrollments
    source: Mapped[str] = mapped_column(String(8), default="config")  # config | csr
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    authority: Mapped[Authority] = relationship()

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der)


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


class Lock(Base):
    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Bundle:
    """What a payload is rendered from: leaf, its key, intermediates (leaf-side first), root."""
    name: str
    version: int
    certificate: x509.Certificate
    private_key: object | None
    intermediates: list[x509.Certificate]
    root: x509.Certificate


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file 0600 before SQLAlchemy does (it would follow the umask)."""
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)


class Store:
    def __init__(self, url: str, *, create: bool = False) -> None:
        self.url = url
        if url.startswith("sqlite:///") and not create:
            path = url.removeprefix("sqlite:///")
            if path != ":memory:" and not Path(path).exists():
                raise StoreError(f"no store at {path}: run `certsync init` first")
        if create:
            _private_sqlite_file(url)
        try:
            self.engine = create_engine(url)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"cannot open store {url.split('@')[-1]}: {exc}") from None
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.master_key: keyring.MasterKey | None = None
        if create:
            Base.metadata.create_all(self.engine)

    # -- sessions and the master key ---------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except SQLAlchemyError as exc:
                session.rollback()
                raise StoreError(f"store error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
            except BaseException:
                session.rollback()
                raise

    def _setting(self, key: str) -> bytes | None:
        try:
            with self.session() as s:
                row = s.get(Setting, key)
                return row.value if row else None
        except StoreError:
            raise StoreError("the store has no certsync tables: run `certsync init` first") from None

    def unlock(self, key_file: Path | None, *, create: bool = False) -> None:
        """Load and check the master key; with create, set one up for a new store."""
        verifier = self._setting("verifier")
        if verifier is None:
            if not create:
                raise StoreError("the store is not initialised: run `certsync init` first")
            if os.environ.get(keyring.ENV_VAR) or (key_file and key_file.exists()):
                key = keyring.load(key_file)
            elif key_file is not None:
                key = keyring.create_key_file(key_file)
            else:
                raise MasterKeyError(f"no master key: set {keyring.ENV_VAR} or store.key_file")
            with self.session() as s:
                s.add(Setting(key="verifier", value=key.verifier()))
        else:
            key = keyring.load(key_file)
            key.check(verifier)
        self.master_key = key

    def _key(self) -> keyring.MasterKey:
        if self.master_key is None:
            raise MasterKeyError("store is locked: no master key loaded")
        return self.master_key

    # -- authorities -------------------------------------------------------------------------------
    def authority(self, session: Session, name: str) -> Authority | None:
        return session.scalars(select(Authority).where(Authority.name == name, Authority.state == "active")
                               .order_by(Authority.generation.desc())).first()

    def add_authority(self, session: Session, name: str, cert: x509.Certificate, key, key_type: str,
                      parent: Authority | None) -> Authority:
        generation = 1 + max((a.generation for a in session.scalars(
            select(Authority).where(Authority.name == name))), default=0)
        row = Authority(name=name, generation=generation, parent_id=parent.id if parent else None,
                        subject=cert.subject.rfc4514_string(), key_type=key_type,
                        serial=format(cert.serial_number, "x"), not_before=cert.not_valid_before_utc,
                        not_after=cert.not_valid_after_utc, cert_der=cert.public_bytes(serialization.Encoding.DER),
                        key_enc=self._key().seal_private_key(key, f"authority:{name}:{generation}"),
                        state="active", created_at=utcnow())
        session.add(row)
        session.flush()
        return row

    def issuer(self, authority: Authority, crl_url: str | None, ocsp_url: str | None) -> Issuer:
        key = self._key().open_private_key(authority.key_enc, f"authority:{authority.name}:{authority.generation}")
        return Issuer(authority.certificate, key, crl_url, ocsp_url)

    def chain(self, authority: Authority) -> tuple[list[x509.Certificate], x509.Certificate]:
        """(intermediates from `authority` upwards, root)."""
        certs = []
        node: Authority | None = authority
        while node is not None:
            certs.append(node.certificate)
            node = node.parent
        return certs[:-1], certs[-1]

    # -- certificates ------------------------------------------------------------------------------
    def current(self, session: Session, name: str) -> Certificate | None:
        """The newest version in force (active), if any."""
        return session.scalars(select(Certificate).where(Certificate.name == name, Certificate.state == "active")
                               .order_by(Certificate.version.desc())).first()

    def latest_versions(self, session: Session) -> list[Certificate]:
        rows = session.scalars(select(Certificate).order_by(Certificate.name, Certificate.version.desc()))
        seen: dict[str, Certificate] = {}
        for row in rows:
            seen.setdefault(row.name, row)
        return list(seen.values())

    def latest_versions_of(self, session: Session, name: str) -> list[Certificate]:
        """Every version of one certificate, newest first."""
        return list(session.scalars(select(Certificate).where(Certificate.name == name)
                                    .order_by(Certificate.version.desc())))

    def add_certificate(self, session: Session, *, name: str, profile: str, authority: Authority,
                        cert: x509.Certificate, key, key_type: str, sans: list[str],
                        source: str = "config") -> Certificate:
        """Record a new version; the previous active version becomes superseded (still valid)."""
        previous = session.scalars(select(Certificate).where(Certificate.name == name)
                                   .order_by(Certificate.version.desc())).first()
        version = (previous.version if previous else 0) + 1
        for old in session.scalars(select(Certificate).where(Certificate.name == name,
                                                              Certificate.state == "active")):
            old.state = "superseded"
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        row = Certificate(name=name, version=version, profile=profile, authority_id=authority.id,
                          serial=format(cert.serial_number, "x"), common_name=cn[0].value if cn else None,
                          sans=sans, key_type=key_type, not_before=cert.not_valid_before_utc,
                          not_after=cert.not_valid_after_utc, state="active",
                          cert_der=cert.public_bytes(serialization.Encoding.DER),
                          key_enc=self._key().seal_private_key(key, f"certificate:{name}:{version}") if key else None,
                          source=source, created_at=utcnow())
        session.add(row)
        session.flush()
        return row

    def by_serial(self, session: Session, serial: int) -> Certificate | None:
        return session.scalars(select(Certificate).where(Certificate.serial == format(serial, "x"))).first()

    def revoke(self, row: Certificate, reason: str, at: datetime) -> None:
        row.state, row.revoked_at, row.revocation_reason = "revoked", at, reason

    def revoked_by(self, session: Session, authority: Authority, now: datetime) -> list[Certificate]:
        """Revoked certificates of one CA that have not expired yet (expired ones leave the CRL)."""
        return list(session.scalars(select(Certificate).where(
            Certificate.authority_id == authority.id, Certificate.state == "revoked",
            Certificate.not_after > now).order_by(Certificate.id)))

    def bundle(self, row: Certificate) -> Bundle:
        key = None
        if row.key_enc is not None:
            key = self._key().open_private_key(row.key_enc, f"certificate:{row.name}:{row.version}")
        intermediates, root = self.chain(row.authority)
        return Bundle(row.name, row.version, row.certificate, key, intermediates, root)

    # -- deployments -------------------------------------------------------------------------------
    def deployments(self, session: Session) -> list[Deployment]:
        return list(session.scalars(select(Deployment)))

    def record_push(self, session: Session, *, cert_name: str, destination: str, remote_name: str,
                    certificate_id: int | None, fingerprint: str, remote_version: str | None) -> None:
        row = session.scalars(select(Deployment).where(Deployment.destination == destination,
                                                       Deployment.remote_name == remote_name)).first()
        if row is None:
            row = Deployment(destination=destination, remote_name=remote_name)
            session.add(row)
        row.cert_name, row.certificate_id, row.fingerprint = cert_name, certificate_id, fingerprint
        row.remote_version, row.pushed_at, row.state = remote_version, utcnow(), "present"

    def record_delete(self, session: Session, *, destination: str, remote_name: str) -> None:
        row = session.scalars(select(Deployment).where(Deployment.destination == destination,
                                                       Deployment.remote_name == remote_name)).first()
        if row is not None:
            row.state, row.pushed_at = "deleted", utcnow()

    # -- the run lock ------------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str = "apply", *, ttl: timedelta = timedelta(hours=2)) -> Iterator[None]:
        """One writer at a time, on any backend: a row that only one transaction can insert."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        now = utcnow()
        try:
            with self.session() as s:
                s.execute(delete(Lock).where(Lock.name == name, Lock.expires_at < now))
                s.add(Lock(name=name, owner=owner, expires_at=now + ttl))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                with self.session() as s:
                    holder = s.get(Lock, name)
                raise LockError(f"another run holds the store lock ({holder.owner if holder else 'unknown'})") from None
            raise
        try:
            yield
        finally:
            with self.session() as s:
                s.execute(delete(Lock).where(Lock.name == name, Lock.owner == owner))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
