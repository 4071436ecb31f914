"""Per-client rate limits: a token bucket per client key (token name, else address), refilled
continuously at `per_minute`/60 a second with a burst of a tenth of a minute (at least 10).
In memory: each replica counts its own clients (a limit against abuse, not a quota)."""
from __future__ import annotations

import threading
import time
from typing import Callable


class RateLimiter:
    MAX_CLIENTS = 100_000      # forget the idlest buckets beyond this (memory stays bounded)

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(10.0, per_minute / 10.0)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}     # key -> (tokens, at)
        self._lock = threading.Lock()

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
