"""Per-client rate limits: a token bucket per client key (token name, else address), refilled
continuously at `per_minute`/60 a second with a burst of a tenth of a minute (at least 10).
In memory: each replica counts its own clients (a limit against abuse, not a quota).

A credential gets a bucket of its own only once it has authenticated (`vouch`): until then its
requests count against the client's address, so a made-up Authorization header per request does
not buy a fresh bucket each time."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable


class RateLimiter:
    MAX_CLIENTS = 100_000  # forget the idlest buckets beyond this (memory stays bounded)
    MAX_VOUCHED = 100_000  # credentials seen to work; beyond this, start again (bounded memory)

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(10.0, per_minute / 10.0)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()
        self._vouched: set[str] = set()

    def vouch(self, authorization: str) -> None:
        """The credential in this Authorization header authenticated: it may count on its own."""
        with self._lock:
            if len(self._vouched) >= self.MAX_VOUCHED:
                self._vouched.clear()
            self._vouched.add(_credential(authorization))

    def key(self, authorization: str | None, address: str) -> str:
        """Whom a request counts against: its credential once vouched for, else its address."""
        if authorization:
            credential = _credential(authorization)
            if credential in self._vouched:
                return credential
        return "addr:" + address

    def allow(self, key: str) -> float | None:
        """None when the request may go on; else the seconds until it may (Retry-After)."""
        if self.rate <= 0:
            return None
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > self.MAX_CLIENTS:
                self._forget_idle(now)
            return None

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


def _credential(authorization: str) -> str:
    return "cred:" + hashlib.sha256(authorization.encode()).hexdigest()[:32]
