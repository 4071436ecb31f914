"""Discovery's pure parts: target spelling, CIDR limits, hostname matching, the rate limiter, scopes."""

from __future__ import annotations

import asyncio
import time

import pytest

from sync.config_discovery import Target, expand_cidr, parse_target
from sync.discovery.tls import TokenBucket, hostname_matches
from sync.store.discovery import _covers
from tests.support.tls_endpoints import make


@pytest.mark.parametrize(
    "text, target, location",
    [
        ("example.test:443", Target("example.test", 443), "tls://example.test:443"),
        (
            "10.0.0.5:8443/api.example.test",
            Target("10.0.0.5", 8443, "api.example.test"),
            "tls://10.0.0.5:8443/api.example.test",
        ),
        ("[::1]:443", Target("::1", 443), "tls://[::1]:443"),
        ("mail.test:587", Target("mail.test", 587, None, "smtp"), "tls://mail.test:587"),
        ("imap://mail.test:993", Target("mail.test", 993, None, "imap"), "tls://mail.test:993"),
        ("tls://mail.test:25", Target("mail.test", 25, None, "tls"), "tls://mail.test:25"),
    ],
)
def test_targets(text, target, location):
    assert parse_target(text) == target and target.location == location


@pytest.mark.parametrize("text", ["nonsense", "host:0", "host:65536", "ftp://host:21", "-bad-:443", "a b:443", ""])
def test_bad_targets(text):
    with pytest.raises(ValueError, match="is not a TLS target"):
        parse_target(text)


def test_cidr_expansion_and_limit():
    assert [str(t) for t in expand_cidr("127.0.0.0/30", [443, 8443], 256)] == [
        "127.0.0.1:443",
        "127.0.0.1:8443",
        "127.0.0.2:443",
        "127.0.0.2:8443",
    ]
    assert [t.host for t in expand_cidr("127.0.0.9/32", [443], 1)] == ["127.0.0.9"]
    with pytest.raises(ValueError, match="more than max_hosts"):
        expand_cidr("10.0.0.0/8", [443], 65536)


def test_hostname_match():
    leaf = make("x", sans=["*.example.test", "exact.test", "127.0.0.1"]).cert
    assert hostname_matches(leaf, Target("a.example.test", 443))
    assert not hostname_matches(leaf, Target("a.b.example.test", 443))  # one label only
    assert not hostname_matches(leaf, Target("example.test", 443))
    assert hostname_matches(leaf, Target("127.0.0.1", 443, "EXACT.test"))
    assert hostname_matches(leaf, Target("127.0.0.1", 443))
    assert not hostname_matches(leaf, Target("127.0.0.2", 443))


def test_token_bucket_paces():
    async def run():
        bucket = TokenBucket(rate=100, burst=1)
        start = time.monotonic()
        for _ in range(21):
            await bucket.acquire()
        return time.monotonic() - start

    assert 0.18 <= asyncio.run(run()) < 1.0


def test_scopes():
    assert _covers("tls://h:443", "tls://h:443") and not _covers("tls://h:443", "tls://h:4430")
    assert not _covers("tls://h:443", "tls://h:443/sni") and _covers("tls://h:", "tls://h:4430")
    assert _covers("file:///r/", "file:///r/a/b.pem") and not _covers("file:///r/", "file:///rx/a.pem")
    assert _covers("file:///r/a.pem", "file:///r/a.pem#2")
