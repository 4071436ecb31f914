"""Opening the store: engine, schema check, transactions, and the master key loaded on demand.

SQLAlchemy 2, SQLite by default, PostgreSQL alike. A command opens the store once (the
application object does) and works in transactions: `with store.transaction() as tx:` gives the
repositories (tx.authorities, tx.certificates, tx.deployments, tx.settings) over one session, committed at
the end. The master key is loaded the first time a key is sealed or opened, so commands that
never touch a private key (plan, list, metrics) run without it.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sync.errors import MasterKeyError, StoreError
from sync.store import keyring, migrations
from sync.store.authorities import Authorities
from sync.store.certificates import Certificates
from sync.store.deployments import Deployments
from sync.store.settings import Settings


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


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file 0600 before SQLAlchemy does (it would follow the umask)."""
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


@dataclass
class Transaction:
    """One unit of work: the repositories over one session, committed when the block ends."""
    session: Session
    authorities: Authorities
    certificates: Certificates
    deployments: Deployments
    settings: Settings

    def flush(self) -> None:
        self.session.flush()


class Store:
    def __init__(self, url: str, *, create: bool = False, key_file: Path | None = None) -> None:
        """Open a store; with create (`certsync init`), create it or upgrade its schema to head.
        Without, a store whose schema is not at head is refused (run `certsync init`).
        key_file: where the master key is, when not in CERTSYNC_MASTER_KEY."""
        self.url = url
        self.display_url = redact_url(url)
        self.key_file = key_file
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
        self._master_key: keyring.MasterKey | None = None
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
        """Close pooled connections."""
        self.engine.dispose()

    # -- sessions ----------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed at the end of the block; a database error becomes a StoreError."""
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

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self.session() as session:
            authorities = Authorities(session, self.master_key)
            yield Transaction(session, authorities, Certificates(session, self.master_key, authorities),
                              Deployments(session), Settings(session))

    # -- the master key ----------------------------------------------------------------------------
    def _verifier(self) -> bytes | None:
        try:
            with self.session() as s:
                return Settings(s).get("verifier")
        except StoreError:
            raise StoreError("the store has no certsync tables: run `certsync init` first") from None

    def unlock(self, *, create: bool = False) -> None:
        """Load and check the master key now; with create, set one up for a new store."""
        verifier = self._verifier()
        key_file = self.key_file
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
                Settings(s).put("verifier", key.verifier())
        else:
            key = keyring.load(key_file)
            key.check(verifier)
        self._master_key = key

    def master_key(self) -> keyring.MasterKey:
        """The master key, loaded and checked against the store on first use."""
        if self._master_key is None:
            self.unlock()
        assert self._master_key is not None
        return self._master_key
