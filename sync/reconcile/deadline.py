"""Cron safety: a run that must end in time.

`apply --max-duration 30m` builds a Deadline when the command starts. apply checks it before each
action it would start (an issuance, a push, a delete): once it has passed, the remaining actions are
reported as skipped ("max duration reached"), actions already under way finish, and the run exits 1.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from collections.abc import Callable

from sync.config import format_duration

MAX_DURATION_REACHED = "max duration reached"


class Deadline:
    """Expires `limit` after it is made, on a monotonic clock (injectable for tests)."""

    def __init__(self, limit: timedelta, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._ends = clock() + limit.total_seconds()
        self._lock = threading.Lock()
        self.reached = False  # True once a check found it expired: some action was not started

    def expired(self) -> bool:
        if self._clock() >= self._ends:
            with self._lock:
                self.reached = True
            return True
        return False

    def __str__(self) -> str:
        return format_duration(self.limit)
