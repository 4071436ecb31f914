"""The certificate store: SQLAlchemy 2, SQLite by default, portable to PostgreSQL.

It records CAs (every generation), certificates (every version with serial, validity and state)
and, per destination, what was last pushed (payload fingerprint, provider version id, time).
Private keys are stored only as AES-256-GCM blobs (see keyring). Only portable column types are
used (no SQLite- or PostgreSQL-only features), so the same schema serves both.
"""
from __future__ import annotations

import os
import re
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import (Boolean, DateTime, ForeignKey, Integer, JSON, LargeBinary, String, TypeDecorator,
                        UniqueConstraint, create_engine, delete, event, false, func, insert, select,
                        update)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from sync import keyring, migrations
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
    # Schema changes go through sync/migrations (a new revision; tests/store checks it matches).
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
    one_off: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # see migration 0003


class Lock(Base):
    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)   # revision 0002


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


def redact_url(url: str) -> str:
    """The store URL as messages may show it: the password masked (SQLAlchemy's own rendering;
    a URL it cannot parse, or with an unencoded '@' in the password, is masked by pattern)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    if parsed is not None and url.count("@") <= 1:
        return parsed.render_as_string(hide_password=True)
    return re.sub(r"^([^:/]+://[^:/@]*):.*@", r"\1:***@", url)


def _scrubbed(exc: BaseException, url: str) -> str:
    """First line of a driver error, with the URL's password masked should the driver repeat it."""
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    secret = re.match(r"^[^:/]+://[^:/@]*:(.*)@", url)
    if secret and len(secret.group(1)) >= 4:
        text = text.replace(secret.group(1), "***")
    return text


class Store:
    def __init__(self, url: str, *, create: bool = False, lock_timeout: timedelta = timedelta(0)) -> None:
        """Open a store; with create (`certsync init`), create it or upgrade its schema to head.
        Without, a store whose schema is not at head is refused (run `certsync init`)."""
        self.url = url
        self.display_url = redact_url(url)
        self.lock_timeout = lock_timeout
        if url.startswith("sqlite:///") and not create:
            path = url.removeprefix("sqlite:///")
            if path != ":memory:" and not Path(path).exists():
                raise StoreError(f"no store at {path}: run `certsync init` first")
        if create:
            _private_sqlite_file(url)
        try:
            self.engine = create_engine(make_url(url))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open store {self.display_url}: {_scrubbed(exc, url)}") from None
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.schema_change: tuple[str | None, str] | None = None
        self.master_key: keyring.MasterKey | None = None
        try:
            if create:
                self.schema_change = migrations.upgrade(self.engine)   # (revision before or None, head)
            else:
                with self.engine.connect() as connection:
                    migrations.check(connection)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open store {self.display_url}: {_scrubbed(exc, url)}") from None
        except StoreError:
            self.engine.dispose()
            raise

    def close(self) -> None:
        """Close pooled connections (a CLI run just exits; long-lived callers should close)."""
        self.engine.dispose()

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
        """The newest version of every certificate, by name: one query, older versions not loaded."""
        newest = (select(Certificate.name, func.max(Certificate.version).label("version"))
                  .group_by(Certificate.name).subquery())
        return list(session.scalars(select(Certificate).join(
            newest, (Certificate.name == newest.c.name) & (Certificate.version == newest.c.version))
            .order_by(Certificate.name)))

    def latest_facts(self, session: Session, *, chunk: int = 1000):
        """What a plan needs of the newest version of every certificate, by name, streamed in
        chunks as plain rows (no ORM objects, no key material): name, version, state, source,
        authority_id, sans, key_type, not_before, not_after, cert_der, has_key."""
        newest = (select(Certificate.name, func.max(Certificate.version).label("version"))
                  .group_by(Certificate.name).subquery())
        stmt = (select(Certificate.name, Certificate.version, Certificate.state, Certificate.source,
                       Certificate.authority_id, Certificate.sans, Certificate.key_type, Certificate.not_before,
                       Certificate.not_after, Certificate.cert_der,
                       Certificate.key_enc.is_not(None).label("has_key"))
                .join(newest, (Certificate.name == newest.c.name) & (Certificate.version == newest.c.version))
                .order_by(Certificate.name))
        return session.execute(stmt.execution_options(yield_per=chunk))

    def deployment_facts(self, session: Session, *, chunk: int = 1000):
        """Every deployment as a plain row (cert_name, destination, remote_name, fingerprint,
        remote_version, state), streamed in chunks."""
        stmt = select(Deployment.cert_name, Deployment.destination, Deployment.remote_name, Deployment.fingerprint,
                      Deployment.remote_version, Deployment.state, Deployment.one_off)
        return session.execute(stmt.execution_options(yield_per=chunk))

    def csr_names(self, session: Session) -> set[str]:
        """Certificates whose newest version is a CSR enrollment (one query)."""
        newest = (select(Certificate.name, func.max(Certificate.version).label("version"))
                  .group_by(Certificate.name).subquery())
        return set(session.scalars(select(Certificate.name).join(
            newest, (Certificate.name == newest.c.name) & (Certificate.version == newest.c.version))
            .where(Certificate.source == "csr")))

    def current_many(self, session: Session, names) -> dict[str, Certificate]:
        """`current` for many names in one query per 500 names: name -> newest active version."""
        found: dict[str, Certificate] = {}
        names = list(dict.fromkeys(names))
        for i in range(0, len(names), 500):
            for row in session.scalars(select(Certificate).where(
                    Certificate.name.in_(names[i:i + 500]), Certificate.state == "active")
                    .order_by(Certificate.name, Certificate.version.desc())):
                found.setdefault(row.name, row)
        return found

    def version_numbers(self, session: Session, names) -> dict[str, int]:
        """Highest version number (any state) per name, for the names that have one."""
        found: dict[str, int] = {}
        names = list(dict.fromkeys(names))
        for i in range(0, len(names), 500):
            found.update(session.execute(select(Certificate.name, func.max(Certificate.version))
                                         .where(Certificate.name.in_(names[i:i + 500]))
                                         .group_by(Certificate.name)).all())
        return found

    @staticmethod
    def certificate_values(*, name: str, version: int, profile: str, authority_id: int,
                           cert: x509.Certificate, key_enc: bytes | None, key_type: str, sans: list[str],
                           source: str = "config", created_at: datetime | None = None,
                           common_name: str | None | bool = True) -> dict:
        """The column values of a new active version (what add_certificate stores).
        common_name True: read it from the certificate; else the CN the caller put in it."""
        if common_name is True:
            cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            common_name = cn[0].value if cn else None
        return dict(name=name, version=version, profile=profile, authority_id=authority_id,
                    serial=format(cert.serial_number, "x"), common_name=common_name,
                    sans=sans, key_type=key_type, not_before=cert.not_valid_before_utc,
                    not_after=cert.not_valid_after_utc, state="active",
                    cert_der=cert.public_bytes(serialization.Encoding.DER), key_enc=key_enc,
                    source=source, created_at=created_at or utcnow(), revoked_at=None, revocation_reason=None)

    def add_certificates(self, session: Session, values: list[dict]) -> None:
        """Record many new versions (from certificate_values, distinct names) in the session's
        transaction: their active versions become superseded, then one multi-row INSERT.
        A first version (version 1) has no predecessor to supersede."""
        names = [v["name"] for v in values if v["version"] > 1]
        for i in range(0, len(names), 500):
            session.execute(update(Certificate).where(Certificate.name.in_(names[i:i + 500]),
                                                      Certificate.state == "active")
                            .values(state="superseded").execution_options(synchronize_session=False))
        if values:
            session.execute(insert(Certificate.__table__), values)

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

    def record_pushes(self, session: Session, pushes: list[dict]) -> None:
        """Record what was pushed (dicts: cert_name, destination, remote_name, certificate_id,
        fingerprint, remote_version, one_off): one query per 500 remote names, new rows inserted
        together at the flush."""
        with session.no_autoflush:
            existing: dict[tuple[str, str], Deployment] = {}
            names = list({p["remote_name"] for p in pushes})
            for i in range(0, len(names), 500):
                for row in session.scalars(select(Deployment).where(Deployment.remote_name.in_(names[i:i + 500]))):
                    existing[(row.destination, row.remote_name)] = row
            now = utcnow()
            for push in pushes:
                key = (push["destination"], push["remote_name"])
                row = existing.get(key)
                if row is None:
                    row = existing[key] = Deployment(destination=key[0], remote_name=key[1])
                    session.add(row)
                row.cert_name, row.certificate_id, row.fingerprint = (push["cert_name"], push["certificate_id"],
                                                                      push["fingerprint"])
                row.remote_version, row.pushed_at, row.state = push["remote_version"], now, "present"
                row.one_off = push.get("one_off", False)

    def record_delete(self, session: Session, *, destination: str, remote_name: str) -> None:
        row = session.scalars(select(Deployment).where(Deployment.destination == destination,
                                                       Deployment.remote_name == remote_name)).first()
        if row is not None:
            row.state, row.pushed_at = "deleted", utcnow()

    # -- the run lock ------------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str = "apply", *, ttl: timedelta = timedelta(minutes=10),
             timeout: timedelta | None = None) -> Iterator[None]:
        """One writer at a time, on any backend: a row that only one transaction can insert.

        While another run holds it, wait up to `timeout` (default the store's lock_timeout; 0 fails
        at once), polling, then raise LockError naming the holder. The holder renews its row every
        quarter of the TTL, so a long run keeps it and a crashed run's lock expires after one TTL
        and is taken over. Same mechanism on SQLite and PostgreSQL: no advisory locks."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        wait = (self.lock_timeout if timeout is None else timeout).total_seconds()
        deadline = time.monotonic() + wait
        pause = 0.05
        while (holder := self._take_lock(name, owner, ttl)) is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                since = holder.acquired_at.strftime("%Y-%m-%dT%H:%M:%SZ") if holder.acquired_at else "an unknown time"
                hint = (f"; gave up after waiting {wait:g}s (store.lock_timeout)" if wait > 0
                        else "; set store.lock_timeout to wait for it")
                raise LockError(f"another run holds the store lock ({holder.owner}, since {since}){hint}")
            time.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._renew_lock, args=(name, owner, ttl, stop), daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()
            with self.session() as s:
                s.execute(delete(Lock).where(Lock.name == name, Lock.owner == owner))

    def _renew_lock(self, name: str, owner: str, ttl: timedelta, stop: threading.Event) -> None:
        while not stop.wait(ttl.total_seconds() / 4):
            try:
                with self.session() as s:
                    s.execute(update(Lock).where(Lock.name == name, Lock.owner == owner)
                              .values(expires_at=utcnow() + ttl))
            except StoreError:
                pass  # the next beat tries again; three misses in a row let the lock expire

    def _take_lock(self, name: str, owner: str, ttl: timedelta) -> Lock | None:
        """Insert our lock row (dropping an expired one first): None when taken, else the holder."""
        while True:
            now = utcnow()
            try:
                with self.session() as s:
                    s.execute(delete(Lock).where(Lock.name == name, Lock.expires_at < now))
                    s.add(Lock(name=name, owner=owner, expires_at=now + ttl, acquired_at=now))
                return None
            except StoreError as exc:
                if not isinstance(exc.__cause__, IntegrityError):
                    raise
            with self.session() as s:
                holder = s.get(Lock, name)
            if holder is not None:
                return holder
            # released between our insert and the look-up: try again at once


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
