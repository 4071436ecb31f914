"""The token bucket paces calls; checked by counting, not by timing assertions on a noisy machine:
a fake clock drives it."""

import pytest

from sync.reconcile import pacing


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def bucket_on(clock, rate):
    return pacing.TokenBucket(rate, clock=clock.monotonic, sleep=clock.sleep)


def test_rate_is_held_over_many_calls(clock):
    bucket = bucket_on(clock, 10.0)
    for _ in range(101):
        bucket.take()
    assert clock.now == pytest.approx(10.0)  # 1 free token, then 100 at 10/s


def test_a_push_costing_several_calls_pays_all_of_them(clock):
    bucket = bucket_on(clock, 10.0)
    for _ in range(11):
        bucket.take(3)
    assert clock.now == pytest.approx(3.0)  # 33 calls at 10/s: the first push rides on the one free token


def test_never_more_than_the_sliding_window_allows(clock):
    """At no point may a 1-second window hold more calls than the rate plus the capacity."""
    bucket = bucket_on(clock, 50.0)
    stamps = []
    for _ in range(500):
        bucket.take()
        stamps.append(clock.now)
    for i, t in enumerate(stamps):
        in_window = sum(1 for u in stamps[i:] if u < t + 1.0)
        assert in_window <= 51


def test_quota_domains():
    from sync.config import from_dict

    cfg = from_dict(
        {
            "destination": {
                "a": {"provider": "aws", "region": "eu-west-1"},
                "b": {"provider": "aws", "region": "eu-west-1"},
                "g": {"provider": "gcp", "project": "p1"},
                "z": {"provider": "azure", "vault_url": "https://V.vault.azure.net/"},
                "fast": {"provider": "gcp", "project": "p2", "max_calls_per_second": 2.5},
            }
        }
    )
    quotas = {name: pacing.quota_of(d) for name, d in cfg.destination.items()}
    assert quotas["a"].domain == quotas["b"].domain  # one region, one quota
    assert quotas["a"].calls_per_second == pytest.approx(47.5)
    assert quotas["g"].calls_per_second == pytest.approx(9.5) and quotas["g"].calls_per_push == 3
    assert quotas["z"].domain == "azure:https://v.vault.azure.net"
    assert quotas["fast"].calls_per_second == 2.5


# --- every call counted, adaptive, shared ---------------------------------------------------------


def test_throttling_slows_the_bucket_down_then_it_recovers(clock):
    bucket = pacing.AdaptiveBucket(10.0, clock=clock.monotonic, sleep=clock.sleep)
    bucket.throttle()
    bucket.throttle()  # one burst of answers: one cut
    assert bucket.adaptive.current() == pytest.approx(7.0)
    for _ in range(71):
        bucket.take()
    assert 7.0 * 1.05 < clock.now < 10.0  # 70 calls: slower than at 10/s, faster than at 7/s (recovering)
    clock.now += 60
    assert bucket.adaptive.current() == pytest.approx(10.0)
    for _ in range(5):
        bucket.throttle()
        clock.now += pacing.COOL_DOWN
    assert bucket.adaptive.current() >= 10.0 * pacing.FLOOR


class SharedStore:
    """An in-memory stand-in for tx.budgets.reserve, on the fake clock (the GCRA of sync/store/budgets.py)."""

    def __init__(self, clock):
        self.clock, self.empty_at, self.calls = clock, {}, 0

    def __call__(self, key, tokens, rate, capacity=1.0):
        self.calls += 1
        now = self.clock.monotonic()
        empty_at = max(self.empty_at.get(key, 0.0), now - capacity / rate)
        start = max(now, empty_at + min(tokens, capacity) / rate)
        self.empty_at[key] = empty_at + tokens / rate
        return start - now


def test_runners_sharing_a_budget_stay_under_it_together(clock):
    """Three runners' buckets on one budget: their calls together never exceed the rate (+1) per second."""
    store = SharedStore(clock)
    buckets = [pacing.SharedBucket("d", 20.0, store, clock=clock.monotonic, sleep=clock.sleep) for _ in range(3)]
    stamps = []
    for i in range(300):
        buckets[i % 3].take(3 if i % 2 else 1)
        stamps.append(clock.now)
    for i, t in enumerate(stamps):
        calls = sum(3 if j % 2 else 1 for j in range(i, len(stamps)) if stamps[j] < t + 1.0)
        assert calls <= 20 + 3 + 3 * 20 * pacing.SharedBucket.CHUNK_SECONDS  # debt of one push, blocks ahead
    assert clock.now == pytest.approx(600 / 20, rel=0.1)  # 600 tokens at 20/s: the budget, not 3x it
    assert store.calls < 300  # blocks: not one store call per take


class CountingPacer:
    def __init__(self):
        self.taken = []

    def take(self, writes=0.0, reads=0.0):
        self.taken.append((writes, reads))

    def throttle(self):
        self.taken.append("throttled")

    def observe(self, seconds):
        pass


def test_every_call_counts_against_its_domain():
    """A push costs its writes and its look-up; a verify read, a delete and each listing page count too."""
    from providers.registry import descriptor
    from sync.config import from_dict

    dest = from_dict({"destination": {"g": {"provider": "gcp", "project": "p"}}}).destination["g"]

    class Bare:
        on_throttle = None

        def get(self, name):
            return None

        def put(self, name, payload, *, content_type, labels):
            return "written"

        def delete(self, name, *, cert, purge=False):
            pass

        def list_managed(self):
            return iter(range(25_001))

    pacer = CountingPacer()
    pacer.rule, pacer.quota = descriptor("gcp").quota, pacing.quota_of(dest)
    bare = Bare()
    provider = pacing.PacedProvider(bare, pacer)
    provider.put("s", "x", content_type="text/plain", labels={})
    provider.get("s")
    provider.delete("s", cert="c")
    assert len(list(provider.list_managed())) == 25_001
    assert pacer.taken == [(3.0, 1.0), (0.0, 1.0), (1.0, 1.0), (0.0, 1.0), (0.0, 1.0)]  # 2 pages
    bare.on_throttle()  # the SDK hook reaches the domain's buckets
    assert pacer.taken[-1] == "throttled"


def test_concurrency_is_sized_from_latency():
    from providers.registry import descriptor
    from sync.config import from_dict

    dest = from_dict({"destination": {"a": {"provider": "aws", "region": "us-east-1"}}}).destination["a"]
    pacer = pacing.Pacer(pacing.quota_of(dest), descriptor("aws").quota, None, None)
    assert pacer.workers(8) == 15  # 47.5 pushes/s x 2 calls x 100 ms x 1.5
    for _ in range(20):
        pacer.observe(0.02)  # loopback
    assert pacer.workers(8) == 8  # never below the configured concurrency
    for _ in range(40):
        pacer.observe(2.0)
    assert pacer.workers(8) == 64  # a slow network: capped
