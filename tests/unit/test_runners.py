"""`apply --shared` in one process: a domain another runner holds is left to it; issuance is not repeated."""

from __future__ import annotations

from sync import config
from sync.app import App
from sync.reconcile import pacing, runners
from sync.store import RunLock
from tests.support.memory import MemoryCloud, MemoryProvider
from tests.unit.conftest import write_config

NAMES = ["a", "b", "c"]


def two_regions(workdir):
    body = (
        '\n[destination.east]\nprovider = "aws"\nregion = "us-east-1"\n'
        '\n[destination.west]\nprovider = "aws"\nregion = "us-west-2"\n'
    )
    body += "".join(
        f'\n[certificate.{n}]\nprofile = "tls-server"\ncommon_name = "{n}.example.internal"\n'
        f'destinations = ["east", "west"]\n'
        for n in NAMES
    )
    write_config(workdir / "sync.toml", body)
    cfg = config.load("sync.toml")
    App(cfg).init()
    return cfg


def test_a_domain_held_by_another_runner_is_left_to_it(workdir):
    cfg = two_regions(workdir)
    clouds = {"east": MemoryCloud(), "west": MemoryCloud()}
    factory = lambda d: MemoryProvider(clouds[d], destination=d)  # noqa: E731
    west = pacing.quota_of(cfg.destination["west"]).domain
    with App(cfg) as other:
        with RunLock(other.store, runners.lock_name(west)).held():  # another runner works on west
            with App(cfg, providers=factory) as app:
                report = app.apply_shared(runner=0)
    assert sorted(clouds["east"]) == NAMES and not clouds["west"]
    assert not report.failed
    with App(cfg, providers=factory) as app:  # west's runner, later
        second = app.apply_shared(runner=1)
    assert sorted(clouds["west"]) == NAMES
    assert [r.action.kind.value for r in second.results if r.status.value == "done"] == ["push"] * 3
    with App(cfg) as app, app.store.transaction() as tx:  # issued once, by the first runner
        assert {n: row.version for n, row in tx.certificates.current_many(NAMES).items()} == {n: 1 for n in NAMES}


def test_runners_start_at_different_domains():
    assert runners.order(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert runners.order(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert runners.order([], 2) == []
