"""The run lock: one writer at a time on any backend, as a row only one transaction can insert.

While another run holds it, `RunLock.acquire` waits up to its timeout (0 fails at once), then
raises LockError naming the holder. The holder renews its row every quarter of the TTL from a
heartbeat thread, so a long run keeps it and a crashed run's lock expires after one TTL and is
taken over. The clock and the sleep are injected, so tests move time instead of waiting.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Iterator

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from sync.clock import rfc3339, utcnow
from sync.errors import LockError, StoreError
from sync.store.models import Lock

if TYPE_CHECKING:
    from sync.store.database import Store

DEFAULT_TTL = timedelta(minutes=10)


class RunLock:
    def __init__(self, store: Store, name: str = "apply", *, ttl: timedelta = DEFAULT_TTL,
                 timeout: timedelta = timedelta(0), clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store, self.name, self.ttl, self.timeout = store, name, ttl, timeout
        self.clock, self.sleep = clock, sleep
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

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
        deadline = self.clock() + self.timeout
        pause = 0.05
        while (holder := self._take()) is not None:
            left = (deadline - self.clock()).total_seconds()
            if left <= 0:
                since = rfc3339(holder.acquired_at) if holder.acquired_at else "an unknown time"
                hint = (f"; gave up after waiting {wait:g}s (store.lock_timeout)" if wait > 0
                        else "; set store.lock_timeout to wait for it")
                raise LockError(f"another run holds the store lock ({holder.owner}, since {since}){hint}")
            self.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)

    def renew(self) -> None:
        """Push our row's expiry one TTL ahead (the heartbeat calls this every quarter TTL)."""
        with self.store.session() as s:
            s.execute(update(Lock).where(Lock.name == self.name, Lock.owner == self.owner)
                      .values(expires_at=self.clock() + self.ttl))

    def release(self) -> None:
        with self.store.session() as s:
            s.execute(delete(Lock).where(Lock.name == self.name, Lock.owner == self.owner))

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(self.ttl.total_seconds() / 4):
            try:
                self.renew()
            except StoreError:
                pass  # the next beat tries again; three misses in a row let the lock expire

    def _take(self) -> Lock | None:
        """Insert our lock row (dropping an expired one first): None when taken, else the holder."""
        while True:
            now = self.clock()
            try:
                with self.store.session() as s:
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
