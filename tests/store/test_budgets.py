"""A quota domain's budget shared through the store (revision 0008), on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest

from sync.store import Store


@pytest.fixture
def url(backend) -> str:
    return backend.url


def test_runners_reserving_from_one_budget_queue_behind_each_other(url):
    """Two stores (two runners) take 10-token blocks at 100/s in turn: each block starts where the
    previous one, whoever took it, ends; another domain's budget is its own."""
    runners = [Store(url, create=True), Store(url)]
    started = time.monotonic()
    delays = []
    for i in range(8):
        with runners[i % 2].transaction(serialized=True) as tx:
            delays.append(tx.budgets.reserve("gcp::p:writes", 10, 100.0))
    elapsed = time.monotonic() - started
    # 80 tokens at 100/s: the last block starts 0.7 s after the first (less the time spent reserving)
    assert delays[-1] >= 0.7 - elapsed - 1e-6
    assert delays == sorted(delays)
    with runners[0].transaction(serialized=True) as tx:
        assert tx.budgets.reserve("azure:https://v:writes", 10, 100.0) < 0.02  # a fresh budget: at once
    for store in runners:
        store.close()
