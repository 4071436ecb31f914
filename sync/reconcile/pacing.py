"""Pacing every call under each cloud's quota.

Work is grouped by quota domain (AWS region, Google project, Azure vault): domains run in
parallel, and inside a domain token buckets hold calls to the quota so a large run takes about
calls / quota and does not provoke throttling. Every call a run makes through its providers
counts (`PacedProvider`): writes and deletes against the write budget, the look-up a push or a
delete makes, verify reads and listing pages against the read budget (one budget where the cloud
counts them together: Key Vault), per each cloud's cost model in its descriptor (QuotaRule).

When throttled anyway, the SDKs' own retry (botocore standard mode, google.api_core Retry,
azure-core's RetryPolicy with Retry-After) backs off, and their hooks tell the domain's buckets,
which slow down (multiplicatively) and recover (additively) once answers come back clean: a quota
lowered by the cloud, or shared with a tool we do not know of, is then met too.

Runners sharing one store (`certsync apply --shared`) share each domain's budget through it
(`SharedBucket`: the bucket's schedule lives in the store, reserved a fraction of a second ahead).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Iterator, Mapping

from providers.registry import descriptor

# Each cloud's quota (calls per second per domain, calls per push and per delete) is in its
# descriptor: providers/<kind>.py DESCRIPTOR.quota and .quota_domain.
# Stay a little under the published quota: buckets at the service are sliding windows, ours is not.
HEADROOM = 0.95


@dataclass(frozen=True)
class Quota:
    domain: str  # what shares one quota
    calls_per_second: float
    calls_per_push: float
    calls_per_delete: float = 1.0


def quota_of(dest) -> Quota:
    provider = descriptor(dest.provider)
    rule = provider.quota
    rate = dest.max_calls_per_second or rule.calls_per_second * HEADROOM
    per_delete = rule.calls_per_delete + (rule.calls_per_purge if getattr(dest, "purge_on_delete", False) else 0.0)
    return Quota(provider.quota_domain(dest), rate, rule.calls_per_push, per_delete)


@dataclass(frozen=True)
class ReadQuota:
    domain: str  # what shares one quota
    reads_per_second: float
    calls_per_read: float  # budget one secret read (a provider `get`) takes


def read_quota_of(dest, max_reads_per_second: float | None = None) -> ReadQuota:
    """The read budget of a destination's quota domain (discovery reads, never writes)."""
    provider = descriptor(dest.provider)
    rule = provider.quota
    rate = max_reads_per_second or rule.reads_per_second * HEADROOM
    if max_reads_per_second is None and getattr(dest, "max_calls_per_second", None):
        # a write rate set by hand (a raised quota, a share of one): reads follow the same factor
        rate = rule.reads_per_second * dest.max_calls_per_second / rule.calls_per_second
    return ReadQuota(provider.quota_domain(dest), rate, rule.calls_per_read)


class TokenBucket:
    """Thread-safe pacing at `rate` calls per second.

    `take(n)` waits until the bucket holds min(n, capacity) tokens, then takes n: a push that costs
    more than the capacity leaves the bucket in debt, and the next callers wait it off. The
    capacity is kept small (default 1) because the services count in sliding windows: a burst on
    top of the full rate would overrun them.

    Each caller reserves its start time under the lock, then sleeps until then (a virtual
    schedule, as GCRA): a caller that wakes late does not push the next ones back, and waiters do
    not all wake at once. Refilling on wake-up instead lost the time between "full" and "awake"
    (tokens beyond the capacity are dropped): at 47.5/s on a busy 2-core machine the bucket then
    paced at ~86% of its rate, at 380/s (Azure) ~67%.
    """

    def __init__(self, rate: float, capacity: float = 1.0, *, clock=time.monotonic, sleep=time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.capacity = rate, max(capacity, 1.0)
        self._clock, self._sleep = clock, sleep
        self._empty_at = clock() - self.capacity / rate  # when the bucket was (or will be) at 0 tokens
        self._lock = threading.Lock()

    def take(self, n: float = 1.0) -> None:
        if n <= 0:
            return
        need = min(n, self.capacity)
        with self._lock:
            now = self._clock()
            empty_at = max(self._empty_at, now - self.capacity / self.rate)  # never more than full
            start = max(now, empty_at + need / self.rate)  # holds `need` tokens then
            self._empty_at = empty_at + n / self.rate
        while (left := start - self._clock()) > 1e-9:
            self._sleep(left)


# --- adaptive rate --------------------------------------------------------------------------------

SLOW_DOWN = 0.7  # a throttling answer: rate x 0.7 (at most once per COOL_DOWN)
FLOOR = 0.1  # never below 10% of the nominal rate
RECOVER = 0.05  # per clean second: + 5% of the nominal rate, up to it
COOL_DOWN = 1.0  # seconds: one burst of throttling answers is one slow-down


class Adaptive:
    """The rate a bucket runs at: nominal, cut on throttling answers, recovering while clean."""

    def __init__(self, nominal: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.nominal, self.rate, self._clock = nominal, nominal, clock
        self._last_cut = self._last_step = clock() - COOL_DOWN
        self.throttled = 0  # answers seen
        self._lock = threading.Lock()

    def throttle(self) -> None:
        with self._lock:
            self.throttled += 1
            now = self._clock()
            if now - self._last_cut >= COOL_DOWN:
                self.rate = max(self.nominal * FLOOR, self.rate * SLOW_DOWN)
                self._last_cut = self._last_step = now

    def current(self) -> float:
        with self._lock:
            now = self._clock()
            if self.rate < self.nominal and now - self._last_cut >= COOL_DOWN:
                self.rate = min(self.nominal, self.rate + self.nominal * RECOVER * (now - self._last_step))
                self._last_step = now
            return self.rate


class AdaptiveBucket(TokenBucket):
    """A TokenBucket whose rate follows `Adaptive` (GCRA: a new rate applies from the next take)."""

    def __init__(self, rate: float, capacity: float = 1.0, **kw: Any) -> None:
        super().__init__(rate, capacity, **kw)
        self.adaptive = Adaptive(rate, self._clock)

    def take(self, n: float = 1.0) -> None:
        self.rate = self.adaptive.current()
        super().take(n)

    def throttle(self) -> None:
        self.adaptive.throttle()


class SharedBucket:
    """A domain's budget shared by every runner on one store: the bucket's schedule (when it is
    empty, GCRA) is a row in the store; each runner reserves blocks of tokens (CHUNK_SECONDS of
    the rate, at least one call) in one short transaction and spends them at the rate locally.
    Runners together then stay under the quota whatever their number; a block a runner does not
    use is lost (under-use, never over-use). `reserve(domain, tokens, rate)` returns how long to
    wait (the store's clock) before the block's first token."""

    CHUNK_SECONDS = 0.25

    def __init__(
        self,
        domain: str,
        rate: float,
        reserve: Callable[[str, float, float], float],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.domain, self._reserve = domain, reserve
        self._clock, self._sleep = clock, sleep
        self.adaptive = Adaptive(rate, clock)
        self.rate = rate
        self._blocks: deque[list[float]] = deque()  # [time of the next token, tokens left]
        self._lock = threading.Lock()

    def take(self, n: float = 1.0) -> None:
        if n <= 0:
            return
        with self._lock:
            self.rate = self.adaptive.current()
            start, need = 0.0, n
            while need > 1e-9:
                if not self._blocks:
                    tokens = max(need, self.rate * self.CHUNK_SECONDS, 1.0)
                    delay = self._reserve(self.domain, tokens, self.rate)
                    self._blocks.append([self._clock() + delay, tokens])
                block = self._blocks[0]
                used = min(need, block[1])
                start = max(start, block[0])
                block[0] += used / self.rate
                block[1] -= used
                need -= used
                if block[1] <= 1e-9:
                    self._blocks.popleft()
        while (left := start - self._clock()) > 1e-9:
            self._sleep(left)

    def throttle(self) -> None:
        self.adaptive.throttle()


# --- every call counted ---------------------------------------------------------------------------


class Pacer:
    """One quota domain: its write and read buckets (one bucket where the cloud counts reads and
    writes together), what each call costs, and the latency its pushes see."""

    def __init__(self, quota: Quota, rule: Any, writes: Any, reads: Any) -> None:
        self.quota, self.rule, self.writes, self.reads = quota, rule, writes, reads
        self.push_seconds = 0.0  # moving average of one push's wall time (calls + waits)
        self.pushes = 0
        self._lock = threading.Lock()

    def take(self, writes: float = 0.0, reads: float = 0.0) -> None:
        if self.reads is self.writes:
            self.writes.take(writes + reads)
            return
        self.reads.take(reads)
        self.writes.take(writes)

    def throttle(self) -> None:
        self.writes.throttle()
        if self.reads is not self.writes:
            self.reads.throttle()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.pushes += 1
            weight = 1.0 / min(self.pushes, 20)
            self.push_seconds += (seconds - self.push_seconds) * weight

    def workers(self, configured: int, assumed_latency: float = 0.1, cap: int = 64) -> int:
        """Calls in flight needed to reach the quota: pushes per second times one push's time
        (observed once pushes have landed, else `assumed_latency` per call), with 50% to spare;
        never fewer than configured (destination.concurrency)."""
        per_push = self.push_seconds or assumed_latency * (self.rule.reads_per_push + self.rule.calls_per_push)
        pushes_per_second = self.quota.calls_per_second / max(self.quota.calls_per_push, 1e-9)
        return max(configured, min(cap, math.ceil(pushes_per_second * per_push * 1.5)))


class PacedProvider:
    """A provider whose every call is paced by its domain's Pacer. Other attributes pass through."""

    def __init__(self, provider: Any, pacer: Pacer) -> None:
        self._provider, self._pacer = provider, pacer
        if hasattr(provider, "on_throttle"):
            provider.on_throttle = pacer.throttle

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    def get(self, name: str) -> Any:
        self._pacer.take(reads=self._pacer.rule.calls_per_read)
        return self._provider.get(name)

    def put(self, name: str, payload: str | bytes, *, content_type: str, labels: Mapping[str, str]) -> Any:
        rule = self._pacer.rule
        self._pacer.take(writes=self._pacer.quota.calls_per_push, reads=rule.reads_per_push)
        started = time.monotonic()
        try:
            return self._provider.put(name, payload, content_type=content_type, labels=labels)
        finally:
            self._pacer.observe(time.monotonic() - started)

    def delete(self, name: str, *, cert: str, purge: bool = False) -> None:
        self._pacer.take(writes=self._pacer.quota.calls_per_delete, reads=self._pacer.rule.reads_per_delete)
        return self._provider.delete(name, cert=cert, purge=purge)

    def list_managed(self) -> Iterator[Any]:
        return self._pages(self._provider.list_managed())

    def list_all(self) -> Iterator[Any]:
        return self._pages(self._provider.list_all())

    def _pages(self, listing: Iterator[Any]) -> Iterator[Any]:
        """One read charged before each page (the SDKs fetch pages lazily as they are consumed).
        list_managed drops foreign secrets, so pages are counted on what comes back: a listing
        of mostly foreign secrets is charged less than it costs (at worst one page per call)."""
        page = max(1, self._pacer.rule.page_size)
        self._pacer.take(reads=1.0)
        for count, secret in enumerate(listing, start=1):
            yield secret
            if count % page == 0:
                self._pacer.take(reads=1.0)


class Pacing:
    """The pacers of one process, per quota domain; `share(reserve)` makes new ones take their
    budget from the store (runners on one store)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._reserve: Callable[[str, float, float], float] | None = None
        self._pacers: dict[str, Pacer] = {}
        self._lock = threading.Lock()

    def share(self, reserve: Callable[[str, float, float], float]) -> None:
        with self._lock:
            self._reserve = reserve
            self._pacers.clear()

    def _bucket(self, key: str, rate: float) -> Any:
        if self._reserve is not None:
            return SharedBucket(key, rate, self._reserve)
        return AdaptiveBucket(rate)

    def pacer(self, destination: str) -> Pacer:
        domain = quota_of(self.config.destination[destination]).domain
        with self._lock:
            found = self._pacers.get(domain)
            if found is None:
                found = self._pacers[domain] = self._make(domain)
            return found

    def _make(self, domain: str) -> Pacer:
        """Destinations sharing a quota domain: the strictest rate of theirs wins."""
        dests = [d for d in self.config.destination.values() if quota_of(d).domain == domain]
        quota = min((quota_of(d) for d in dests), key=lambda q: q.calls_per_second)
        read_rate = min(read_quota_of(d).reads_per_second for d in dests)
        rule = descriptor(dests[0].provider).quota
        writes = self._bucket(f"{domain}:writes", quota.calls_per_second)
        reads = writes if rule.one_budget else self._bucket(f"{domain}:reads", read_rate)
        return Pacer(quota, rule, writes, reads)

    def wrap(self, providers: Callable[[str], Any]) -> Callable[[str], Any]:
        def paced(destination: str) -> Any:
            return PacedProvider(providers(destination), self.pacer(destination))

        paced.raw = providers  # type: ignore[attr-defined]
        return paced
