"""The run lock: one writer at a time on any backend, held by a lock that dies with its holder.

The lock itself is one the operating system or the database server releases when the holder dies:
on PostgreSQL a session-level advisory lock (`pg_try_advisory_lock`) on a connection of its own,
held open for the run (the server releases it when that connection ends: a killed process, a
closed socket, a dead host once TCP keepalives give up, set to about a minute on that connection);
on SQLite an exclusive `flock` on a file next to the database (`certsync.db.lock`, 0600, opened
close-on-exec), which the kernel releases when the process dies. So a crashed run never blocks the
next one: whoever gets the lock knows the previous holder is gone and takes over its record at once.

The record is a row in the `locks` table (owner HOST:PID:ID, since when, expiry): it names the
holder in the error of a run that finds the lock taken. While another run holds it,
`RunLock.acquire` waits up to its timeout (0 fails at once), then raises LockError naming the
holder. The holder renews its row every quarter of the TTL from a heartbeat thread. A store with
neither (SQLite in memory, another dialect) falls back to the row alone: a crashed run's row
expires after one TTL and is taken over; expiry is decided by the database's clock (read in the
transaction that inserts, renews or drops expired rows), so runners whose clocks disagree still
agree on who holds the lock. Tests may inject a clock (it then replaces the database's) and the
sleep, and move time instead of waiting.

Fencing: `check()` raises LockError once the lock is lost, and apply calls it before each store
write and before each push, so a run that lost the lock stops writing. On PostgreSQL a lost lock
connection is a lost lock: `check()` asks that connection each time (and the heartbeat every
quarter TTL). An flock cannot be lost while the process lives. On every backend a renewal that
updates no row (the record was taken over or deleted) or a heartbeat that fails also counts as lost.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, UTC
from typing import TYPE_CHECKING, Any, cast
from collections.abc import Callable, Iterator

from sqlalchemy import CursorResult, delete, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from sync.clock import rfc3339, utcnow
from sync.errors import LockError, StoreError
from sync.store.models import Lock

if TYPE_CHECKING:
    from sync.store.database import Store

DEFAULT_TTL = timedelta(minutes=10)
UNKNOWN_GRACE = timedelta(seconds=2)  # a holder that has the lock but not yet its row: wait that long for its name


class FileLock:
    """SQLite: an exclusive flock on PATH (created 0600, close-on-exec: no child inherits it).
    The kernel releases it when the process dies; it cannot be lost while the process lives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def try_take(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from None
        self.fd = fd
        return True

    def alive(self) -> bool:
        return self.fd is not None

    def close(self) -> None:
        """Let go (closing the descriptor drops the flock, as the process's death would)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class AdvisoryLock:
    """PostgreSQL: a session-level advisory lock on a connection of its own (out of the pool),
    open for the run. The server releases it when the connection ends, so a lost connection is a
    lost lock. TCP keepalives on that connection let the server notice a vanished client."""

    SESSION = (
        ("tcp_keepalives_idle", "30"),
        ("tcp_keepalives_interval", "10"),
        ("tcp_keepalives_count", "3"),
        ("idle_session_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
    )

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        digest = hashlib.sha256(f"certsync run lock:{name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self.conn: Connection | None = None
        self.mutex = threading.Lock()  # the heartbeat and check() share the connection

    def try_take(self) -> bool:
        try:
            conn = self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            conn.detach()  # never back to the pool with the lock held
        except SQLAlchemyError as exc:
            raise StoreError(f"store error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
        try:
            for setting, value in self.SESSION:
                try:
                    conn.exec_driver_sql("SELECT set_config(%s, %s, false)", (setting, value))
                except SQLAlchemyError:  # a server without it (idle_session_timeout: 14+)
                    pass
            taken = conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (self.key,)).scalar_one()
        except SQLAlchemyError as exc:
            conn.close()
            raise StoreError(f"store error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
        if not taken:
            conn.close()
            return False
        self.conn = conn
        return True

    def alive(self) -> bool:
        """Whether the lock's connection still answers (while it does, the lock is ours)."""
        with self.mutex:
            if self.conn is None:
                return False
            try:
                self.conn.exec_driver_sql("SELECT 1").scalar_one()
                return True
            except SQLAlchemyError:
                return False

    def close(self) -> None:
        with self.mutex:
            if self.conn is None:
                return
            conn, self.conn = self.conn, None
            try:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (self.key,))
            except SQLAlchemyError:
                pass  # the connection is gone, and the lock with it
            finally:
                conn.close()


def _holder_lock(store: Store, name: str) -> FileLock | AdvisoryLock | None:
    """The lock that dies with its holder for this store, or None (the row alone decides)."""
    dialect = store.engine.dialect.name
    if dialect == "postgresql":
        return AdvisoryLock(store, name)
    database = store.engine.url.database
    if dialect == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        suffix = "" if name == "apply" else f".{name}"
        return FileLock(f"{database}{suffix}.lock")
    return None


class RunLock:
    def __init__(
        self,
        store: Store,
        name: str = "apply",
        *,
        ttl: timedelta = DEFAULT_TTL,
        timeout: timedelta = timedelta(0),
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """clock: None (the default) lets the database's clock decide expiry; a test's clock
        replaces it (and also measures the wait)."""
        self.store, self.name, self.ttl, self.timeout = store, name, ttl, timeout
        self.clock, self.sleep = clock, sleep
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost: str | None = None  # why we no longer hold the lock, once we know
        self.guard = _holder_lock(store, name)  # the lock that dies with us (None: the row alone)

    def _now(self, session: Session) -> datetime:
        """The time that decides expiry: the injected clock, else the database's."""
        return self.clock() if self.clock is not None else database_now(session)

    def check(self) -> None:
        """Raise LockError when the lock was lost: the caller must not write any more."""
        if self.lost is None and isinstance(self.guard, AdvisoryLock) and not self.guard.alive():
            self.lost = "its database connection was lost, and the lock with it"
        if self.lost is not None:
            raise LockError(f"lost the store lock ({self.lost}): stopping before the next write")

    @contextmanager
    def held(self, *, heartbeat: bool = True) -> Iterator[RunLock]:
        """Hold the lock for the block (renewed in the background unless heartbeat=False)."""
        self.acquire()
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(stop,), daemon=True) if heartbeat else None
        if beat is not None:
            beat.start()
        try:
            yield self
        finally:
            stop.set()
            if beat is not None:
                beat.join()
            self.release()

    def acquire(self) -> None:
        wait = self.timeout.total_seconds()
        waited = self.clock or utcnow  # how long we wait is our own affair
        deadline = waited() + self.timeout
        pause = 0.05
        while (holder := self._take()) is not None:
            left = (deadline - waited()).total_seconds()
            if holder.owner is None and left <= 0 and left > -UNKNOWN_GRACE.total_seconds():
                left = 0.05  # it holds the lock and is writing its row: learn its name
            elif left <= 0:
                since = rfc3339(holder.acquired_at) if holder.acquired_at else "an unknown time"
                hint = (
                    f"; gave up after waiting {wait:g}s (store.lock_timeout)"
                    if wait > 0
                    else "; set store.lock_timeout to wait for it"
                )
                owner = holder.owner or "owner unknown"
                raise LockError(f"another run holds the store lock ({owner}, since {since}){hint}")
            self.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)

    def renew(self) -> None:
        """Push our row's expiry one TTL ahead (the heartbeat calls this every quarter TTL). When
        no row is ours any more (taken over once our lock died, or past its TTL where the row alone
        decides, or deleted) or the lock's connection is gone, the lock is recorded as lost."""
        with self.store.session() as s:
            statement = (
                update(Lock)
                .where(Lock.name == self.name, Lock.owner == self.owner)
                .values(expires_at=self._now(s) + self.ttl)
            )
            result = cast("CursorResult[Any]", s.execute(statement))  # DML: a CursorResult
            if result.rowcount == 0 and self.lost is None:
                self.lost = "it was taken over or removed while this run held it"
        if self.lost is None and self.guard is not None and not self.guard.alive():
            self.lost = "its database connection was lost, and the lock with it"

    def release(self) -> None:
        try:
            with self.store.session() as s:
                s.execute(delete(Lock).where(Lock.name == self.name, Lock.owner == self.owner))
        finally:
            if self.guard is not None:
                self.guard.close()

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(self.ttl.total_seconds() / 4):
            try:
                self.renew()
            except Exception as exc:  # we cannot tell whether we still hold it: stop writing
                if self.lost is None:
                    self.lost = f"the heartbeat could not renew it: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                return
            if self.lost is not None:
                return

    def _take(self) -> Lock | None:
        """Take the lock: None when taken, else the holder's row (its owner None if it has none)."""
        if self.guard is None:
            return self._take_row()
        if not self.guard.try_take():
            with self.store.session() as s:
                holder = s.get(Lock, self.name)
            return holder if holder is not None else Lock(name=self.name, owner=None, acquired_at=None)
        try:  # ours: any row left is the record of a run that died (or lost its lock)
            with self.store.session() as s:
                now = self._now(s)
                s.execute(delete(Lock).where(Lock.name == self.name))
                s.add(Lock(name=self.name, owner=self.owner, expires_at=now + self.ttl, acquired_at=now))
        except BaseException:
            self.guard.close()
            raise
        return None

    def _take_row(self) -> Lock | None:
        """Insert our lock row (dropping an expired one first): None when taken, else the holder."""
        while True:
            try:
                with self.store.session() as s:
                    now = self._now(s)
                    s.execute(delete(Lock).where(Lock.name == self.name, Lock.expires_at < now))
                    s.add(Lock(name=self.name, owner=self.owner, expires_at=now + self.ttl, acquired_at=now))
                return None
            except StoreError as exc:
                if not isinstance(exc.__cause__, IntegrityError):
                    raise
            with self.store.session() as s:
                holder = s.get(Lock, self.name)
            if holder is not None:
                return holder
            # released between our insert and the look-up: try again at once


def database_now(session: Session) -> datetime:
    """The database server's current time, as an aware UTC datetime. SQLite's clock is the
    machine's (it runs in this process), with milliseconds; PostgreSQL's is the server's."""
    if session.get_bind().dialect.name == "sqlite":
        value = session.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    value = session.execute(text("SELECT clock_timestamp()")).scalar_one()
    return value.astimezone(UTC)
