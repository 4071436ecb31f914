"""Nothing lost: a run that dies in the push phase leaves the store knowing every copy that landed.

Pushes are recorded as they land (small batches from the main thread), a copy found in a listing
with our tags and a fingerprint we hold but no record is adopted into the records, and `retire`
or a removal from config finds copies by record and by tagged listing."""

import itertools
import threading

import pytest

from providers.base import CERT_LABEL
from sync import config
from sync.app import App
from sync.reconcile.plan import Kind
from tests.support.memory import MemoryCloud, MemoryProvider
from tests.unit.conftest import write_config

NAMES = ("a1", "a2", "a3", "a4", "a5")


class Crash(MemoryProvider):
    """Dies (SystemExit, as a signal handler or os._exit would end the run) on put number `at`:
    before the write reaches the cloud, or after it (the response never came back)."""

    def __init__(self, cloud: MemoryCloud, at: int | None, *, after_write: bool = False) -> None:
        super().__init__(cloud)
        self.at, self.after_write = at, after_write
        self.count = itertools.count(1)
        self.lock = threading.Lock()
        self.puts = 0
        self.died_on: str | None = None

    def put(self, name, payload, *, content_type, labels):
        with self.lock:
            n = next(self.count)
        if n == self.at and not self.after_write:
            self.died_on = name
            raise SystemExit(9)
        result = super().put(name, payload, content_type=content_type, labels=labels)
        with self.lock:
            self.puts += 1
        if n == self.at and self.after_write:
            self.died_on = name
            raise SystemExit(9)
        return result


def certs_config(workdir, names=NAMES, extra_dest=""):
    body = '\n[destination.vault]\nprovider = "aws"\nregion = "eu-west-1"\nconcurrency = 1\n' + extra_dest
    body += "".join(
        f'\n[certificate.{n}]\nprofile = "tls-server"\ncommon_name = "{n}.example.internal"\ndestinations = ["vault"]\n'
        for n in names
    )
    write_config(workdir / "sync.toml", body)
    cfg = config.load("sync.toml")
    App(cfg).init()
    return cfg


def recorded(cfg) -> dict[tuple[str, str], str]:
    with App(cfg) as app, app.store.transaction() as tx:
        return {(d.destination, d.remote_name): d.cert_name for d in tx.deployments.present()}


@pytest.fixture
def cfg(workdir):
    return certs_config(workdir)


def test_pushes_that_landed_before_a_crash_are_recorded(cfg):
    cloud = MemoryCloud()
    provider = Crash(cloud, at=4)
    with pytest.raises(SystemExit):
        App(cfg, providers=lambda d: provider).apply()
    assert len(cloud) >= 3
    assert recorded(cfg) == {("vault", name): name for name in cloud}


def test_a_copy_that_landed_unrecorded_is_adopted_by_the_next_run(cfg):
    cloud = MemoryCloud()
    provider = Crash(cloud, at=2, after_write=True)  # the second put landed, its answer was lost
    with pytest.raises(SystemExit):
        App(cfg, providers=lambda d: provider).apply()
    orphan = provider.died_on
    assert orphan in cloud and set(recorded(cfg)) == {("vault", n) for n in cloud if n != orphan}
    version = cloud[orphan].version

    plain = MemoryProvider(cloud)
    plan = App(cfg, providers=lambda d: plain).plan()
    adopt = [a for a in plan.actions if a.kind == Kind.ADOPT]
    assert [(a.cert, a.remote_name) for a in adopt] == [(orphan, orphan)]
    assert "not recorded" in adopt[0].reason

    report = App(cfg, providers=lambda d: plain).apply()
    assert not report.failed
    assert cloud[orphan].version == version  # adopted: recorded, not written again
    assert recorded(cfg) == {("vault", n): n for n in NAMES}
    assert {c.name: c.in_sync for c in App(cfg).inventory().certificates if c.name in NAMES} == {n: 1 for n in NAMES}
    again = App(cfg, providers=lambda d: plain).plan()  # then nothing more to do
    assert not again.changes


def test_retire_deletes_a_tagged_copy_without_a_record(cfg, workdir):
    cloud, other = MemoryCloud(), MemoryCloud()
    clouds = {"vault": cloud, "other": other}
    cfg = certs_config(workdir, extra_dest='\n[destination.other]\nprovider = "aws"\nregion = "eu-west-2"\n')
    provider = Crash(cloud, at=1, after_write=True)
    with pytest.raises(SystemExit):
        App(cfg, providers=lambda d: provider).apply()
    orphan = provider.died_on
    assert orphan in cloud and ("vault", orphan) not in recorded(cfg)
    # a copy elsewhere, tagged for the same certificate, and one of another certificate
    MemoryProvider(other).put(orphan, "x", content_type="text/plain", labels={**cloud[orphan].labels})
    MemoryProvider(other).put("keep", "x", content_type="text/plain", labels={**cloud[orphan].labels, CERT_LABEL: "a5"})
    report = App(cfg, providers=lambda d: MemoryProvider(clouds[d])).retire(orphan)
    assert not report.failed
    assert orphan not in cloud and orphan not in other and "keep" in other
    with App(cfg) as app, app.store.transaction() as tx:
        assert tx.certificates.current(orphan) is None  # retired


def test_removal_from_config_deletes_a_tagged_copy_without_a_record(cfg, workdir):
    cloud = MemoryCloud()
    provider = Crash(cloud, at=5, after_write=True)
    with pytest.raises(SystemExit):
        App(cfg, providers=lambda d: provider).apply()
    orphan = provider.died_on
    assert orphan in cloud and ("vault", orphan) not in recorded(cfg)
    cfg = certs_config(workdir, names=[n for n in NAMES if n != orphan])
    plain = MemoryProvider(cloud)
    plan = App(cfg, providers=lambda d: plain).plan()
    assert [(a.kind, a.cert) for a in plan.changes] == [(Kind.DELETE, orphan)]
    report = App(cfg, providers=lambda d: plain).apply()
    assert not report.failed and orphan not in cloud and set(cloud) == set(NAMES) - {orphan}
