"""Opening the store: engine, schema check, transactions, and the master key loaded on demand.

SQLAlchemy 2, SQLite by default, PostgreSQL alike. A command opens the store once (the
application object does) and works in transactions: `with store.transaction() as tx:` gives the
repositories (tx.authorities, tx.certificates, tx.deployments, tx.settings) over one session, committed at
the end. The master key is loaded the first time a key is sealed or opened, so commands that
never touch a private key (plan, list, metrics) run without it.
"""

from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from collections.abc import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sync import logs
from sync.errors import MasterKeyError, StoreError
from sync.store import keyring, migrations
from sync.store.acme import Acme
from sync.store.audit import Audit
from sync.store.authorities import Authorities
from sync.store.budgets import Budgets
from sync.store.certificates import Certificates
from sync.store.deployments import Deployments
from sync.store.discovery import Discovery
from sync.store.settings import Settings
from sync.store.tokens import Tokens


def redact_url(url: str) -> str:
    """The store URL as messages may show it: the password masked (SQLAlchemy's own rendering;
    a URL it cannot parse, or with an unencoded '@' in the password, is masked by pattern)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    if parsed is not None and url.count("@") <= 1:
        secret = [k for k in parsed.query if k.lower() in logs.PASSWORD_KEYS]
        if secret:  # ?password=... : a password too, which hide_password does not cover
            parsed = parsed.difference_update_query(secret)
            shown = parsed.render_as_string(hide_password=True)
            return shown + ("&" if parsed.query else "?") + "&".join(f"{k}=***" for k in secret)
        return parsed.render_as_string(hide_password=True)
    return logs.mask_password_params(re.sub(r"^([^:/]+://[^:/@]*):.*@", r"\1:***@", url))


def _scrubbed(exc: BaseException, url: str) -> str:
    """First line of a driver error, with the URL's password masked should the driver repeat it."""
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    secret = re.match(r"^[^:/]+://[^:/@]*:(.*)@", url)
    if secret and len(secret.group(1)) >= 4:
        text = text.replace(secret.group(1), "***")
    return logs.mask_password_params(text.replace(url, redact_url(url)))


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


CONNECT_TIMEOUT = timedelta(seconds=10)
STATEMENT_TIMEOUT = timedelta(seconds=60)


def _postgres_connect_args(url: URL, connect_timeout: timedelta, statement_timeout: timedelta) -> dict:
    """libpq parameters: connect_timeout (whole seconds; libpq waits at least 2) and the session's
    statement_timeout, added to any `options` the URL already carries."""
    options = url.query.get("options")
    options = " ".join(options) if isinstance(options, tuple) else (options or "")
    millis = int(statement_timeout.total_seconds() * 1000)
    return {
        "connect_timeout": max(1, math.ceil(connect_timeout.total_seconds())),
        "options": f"{options} -c statement_timeout={millis}".strip(),
    }


def _timeout_hint(exc: SQLAlchemyError) -> str:
    return "; raise store.statement_timeout if it must run longer" if "statement timeout" in str(exc) else ""


@dataclass
class Transaction:
    """One unit of work: the repositories over one session, committed when the block ends."""

    session: Session
    authorities: Authorities
    certificates: Certificates
    deployments: Deployments
    settings: Settings
    tokens: Tokens
    audit: Audit
    discovery: Discovery
    acme: Acme
    budgets: Budgets

    def flush(self) -> None:
        self.session.flush()


class Store:
    def __init__(
        self,
        url: str,
        *,
        create: bool = False,
        key_file: Path | None = None,
        connect_timeout: timedelta = CONNECT_TIMEOUT,
        statement_timeout: timedelta = STATEMENT_TIMEOUT,
    ) -> None:
        """Open a store; with create (`certsync init`), create it or upgrade its schema to head.
        Without, a store whose schema is not at head is refused (run `certsync init`).
        key_file: where the master key is, when not in CERTSYNC_MASTER_KEY. connect_timeout and
        statement_timeout (0: none) apply to PostgreSQL: no hang on a server that does not answer."""
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
            parsed = make_url(url)
            connect_args = (
                _postgres_connect_args(parsed, connect_timeout, statement_timeout)
                if parsed.get_backend_name() == "postgresql"
                else {}
            )
            self.engine = create_engine(parsed, connect_args=connect_args)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open store {self.display_url}: {_scrubbed(exc, url)}") from None
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.schema_change: tuple[str | None, str] | None = None
        self._master_key: keyring.MasterKey | None = None
        try:
            if create:
                self.schema_change = migrations.upgrade(self.engine)  # (revision before or None, head)
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
                raise StoreError(
                    f"store error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}{_timeout_hint(exc)}"
                ) from exc
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def transaction(self, *, serialized: bool = False) -> Iterator[Transaction]:
        """serialized: one such transaction at a time per store, whatever it reads before writing
        (CRL publication). SQLite: opened with BEGIN IMMEDIATE, so the write lock is held before the
        first read (pysqlite's own deferred BEGIN would come only before the first write, after
        the reads); PostgreSQL: the repositories lock the rows they guard (SELECT ... FOR UPDATE)."""
        with self.session() as session:
            if serialized and self.engine.dialect.name == "sqlite":
                # pysqlite sees a transaction open and so emits no BEGIN of its own; commit and
                # rollback end this one (busy_timeout makes a second publisher wait here)
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            authorities = Authorities(session, self.master_key)
            yield Transaction(
                session,
                authorities,
                Certificates(session, self.master_key, authorities),
                Deployments(session),
                Settings(session),
                Tokens(session),
                Audit(session),
                Discovery(session),
                Acme(session, self.master_key),
                Budgets(session),
            )

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

    def password_tag(self, destination: str, password: bytes) -> str:
        """The keyed tag of a PFX password (keyring.MasterKey.password_tag); loads the master key."""
        return self.master_key().password_tag(destination, password)

    def use_master_key(self, key: keyring.MasterKey) -> None:
        """After a rotation committed: seal and open with the new key from now on."""
        self._master_key = key

    def master_key(self) -> keyring.MasterKey:
        """The master key, loaded and checked against the store on first use."""
        if self._master_key is None:
            self.unlock()
        assert self._master_key is not None
        return self._master_key
