"""Quota budgets shared by runners on one store: each domain's token bucket as one row.

GCRA (as sync/reconcile/pacing.TokenBucket) with the schedule in the store: `reserve` locks the
row (SELECT ... FOR UPDATE on PostgreSQL; the caller opens SQLite transactions with BEGIN
IMMEDIATE), moves the time the bucket is empty by tokens / rate and says how long to wait before
the first token. Times are the store's clock (PostgreSQL's clock_timestamp(), the machine's for
SQLite), so runners on hosts whose clocks disagree still share one schedule.
"""

from __future__ import annotations

import hashlib
import time

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from sync.store.models import QuotaBudget


def budget_key(name: str) -> str:
    """A domain's key as stored (long endpoint URLs hashed to fit)."""
    return name if len(name) <= 200 else f"{name[:120]}#{hashlib.sha256(name.encode()).hexdigest()[:32]}"


class Budgets:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _now(self) -> float:
        if self.session.get_bind().dialect.name == "postgresql":
            return float(self.session.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
        return time.time()

    def reserve(self, name: str, tokens: float, rate: float, capacity: float = 1.0) -> float:
        """Take `tokens` from the budget `name` paced at `rate`/s: seconds to wait before the first
        of them (0: at once). The rest follow at `rate` (the caller spends them so)."""
        key = budget_key(name)
        self._ensure(key)
        row = self.session.execute(select(QuotaBudget).where(QuotaBudget.key == key).with_for_update()).scalar_one()
        now = self._now()
        empty_at = max(row.empty_at, now - capacity / rate)  # never more than full
        start = max(now, empty_at + min(tokens, capacity) / rate)
        row.empty_at = empty_at + tokens / rate
        return start - now

    def _ensure(self, key: str) -> None:
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]  # same API as postgresql's
        self.session.execute(insert(QuotaBudget).values(key=key, empty_at=0.0).on_conflict_do_nothing())
