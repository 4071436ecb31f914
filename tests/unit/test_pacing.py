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
    cfg = from_dict({"destination": {
        "a": {"provider": "aws", "region": "eu-west-1"}, "b": {"provider": "aws", "region": "eu-west-1"},
        "g": {"provider": "gcp", "project": "p1"}, "z": {"provider": "azure", "vault_url": "https://V.vault.azure.net/"},
        "fast": {"provider": "gcp", "project": "p2", "max_calls_per_second": 2.5}}})
    quotas = {name: pacing.quota_of(d) for name, d in cfg.destination.items()}
    assert quotas["a"].domain == quotas["b"].domain  # one region, one quota
    assert quotas["a"].calls_per_second == pytest.approx(47.5)
    assert quotas["g"].calls_per_second == pytest.approx(9.5) and quotas["g"].calls_per_push == 3
    assert quotas["z"].domain == "azure:https://v.vault.azure.net"
    assert quotas["fast"].calls_per_second == 2.5
