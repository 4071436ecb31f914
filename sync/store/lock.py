"""The run lock: one writer at a time on any backend, as a row only one transaction can insert.

While another run holds it, `RunLock.acquire` waits up to its timeout (0 fails at once), then
raises LockError naming the holder. The holder renews its row every quarter of the TTL from a
heartbeat thread, so a long run keeps it and a crashed run's lock expires after one TTL and is
taken over. Expiry is decided by the database's clock (read in the transaction that inserts,
renews or drops expired rows), so runners on machines whose clocks disagree still agree on who
holds the lock. Tests may inject a clock (it then replaces the database's) and the sleep, and move
time instead of waiting.

Fencing: a holder whose renewal updates no row (the lock was taken over or deleted) or whose
heartbeat fails records that it `lost` the lock; `check()` then raises LockError, and apply calls
it before each store write and before each push, so a run that lost the lock stops writing.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Iterator

from sqlalchemy import delete, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sync.clock import rfc3339, utcnow
from sync.errors import LockError, StoreError
from sync.store.models import Lock

if TYPE_CHECKING:
    from sync.store.database import Store

DEFAULT_TTL = timedelta(minutes=10)


class RunLock:
    def __init__(self, store: Store, name: str = "apply", *, ttl: timedelta = DEFAULT_TTL,
                 timeout: timedelta = timedelta(0), clock: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """clock: None (the default) lets the database's clock decide expiry; a test's clock
        replaces it (and also measures the wait)."""
        self.store, self.name, self.ttl, self.timeout = store, name, ttl, timeout
        self.clock, self.sleep = clock, sleep
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost: str | None = None      # why we no longer hold the lock, once we know

    def _now(self, session: Session) -> datetime:
        """The time that decides expiry: the injected clock, else the database's."""
        return self.clock() if self.clock is not None else database_now(session)

    def check(self) -> None:
        """Raise LockError when the lock was lost: the caller must not write any more."""
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
        waited = self.clock or utcnow          # how long we wait is our own affair
        deadline = waited() + self.timeout
        pause = 0.05
        while (holder := self._take()) is not None:
            left = (deadline - waited()).total_seconds()
            if left <= 0:
                since = rfc3339(holder.acquired_at) if holder.acquired_at else "an unknown time"
                hint = (f"; gave up after waiting {wait:g}s (store.lock_timeout)" if wait > 0
                        else "; set store.lock_timeout to wait for it")
                raise LockError(f"another run holds the store lock ({holder.owner}, since {since}){hint}")
            self.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)

    def renew(self) -> None:
        """Push our row's expiry one TTL ahead (the heartbeat calls this every quarter TTL). When
        no row is ours any more (taken over after a pause longer than the TTL, or deleted), the
        lock is recorded as lost."""
        with self.store.session() as s:
            result = s.execute(update(Lock).where(Lock.name == self.name, Lock.owner == self.owner)
                               .values(expires_at=self._now(s) + self.ttl))
            if result.rowcount == 0 and self.lost is None:
                self.lost = "it was taken over or removed while this run held it"

    def release(self) -> None:
        with self.store.session() as s:
            s.execute(delete(Lock).where(Lock.name == self.name, Lock.owner == self.owner))

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
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
    value = session.execute(text("SELECT clock_timestamp()")).scalar_one()
    return value.astimezone(timezone.utc)
