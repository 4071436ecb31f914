"""Streaming apply: pushes start while issuance goes on, and what a run holds at once (rendered
payloads, opened bundles) is bounded by the pipeline's queue sizes, not by the number of
certificates."""

import threading
import weakref

import pytest

from sync import config
from sync.app import App
from sync.pki import render
from sync.pki.bundle import Bundle
from sync.reconcile import apply
from tests.support.memory import MemoryCloud, MemoryProvider
from tests.unit.conftest import write_config


def many_certs(workdir, n: int):
    body = (
        '\n[destination.vault]\nprovider = "aws"\nregion = "eu-west-1"\nconcurrency = 4\nmax_calls_per_second = 5000\n'
    )
    body += "".join(
        f'\n[certificate.c{i}]\nprofile = "tls-server"\ncommon_name = "c{i}.example.internal"\n'
        f'destinations = ["vault"]\n'
        for i in range(n)
    )
    write_config(workdir / "sync.toml", body)
    cfg = config.load("sync.toml")
    App(cfg).init()
    return cfg


class Alive:
    """Counts the instances of some classes alive right now: +1 as one is made, -1 as it dies.

    Not gc.get_objects(): called from a push thread it can take a reference to a tuple the main
    thread is still building, and CPython then fails that tuple's resize with a SystemError."""

    def __init__(self, monkeypatch, *classes) -> None:
        self.count, self.lock = 0, threading.Lock()
        for cls in classes:

            def init(obj, *args, __init=cls.__init__, **kwargs):
                __init(obj, *args, **kwargs)
                self.change(+1)
                weakref.finalize(obj, self.change, -1)

            monkeypatch.setattr(cls, "__init__", init)

    def change(self, by: int) -> None:
        with self.lock:
            self.count += by

    def __len__(self) -> int:
        return self.count


class Watching(MemoryProvider):
    """Notes, at each put, how many certificates were issued so far; every `sample`-th put it
    counts the payloads and bundles alive in the process (those in `alive`)."""

    def __init__(self, cloud: MemoryCloud, issued: list, sample: int = 0, alive: Alive | None = None) -> None:
        super().__init__(cloud)
        self.issued, self.sample, self.alive = issued, sample, alive
        self.lock = threading.Lock()
        self.seen_at_put: list[int] = []
        self.live_peak = 0

    def put(self, name, payload, *, content_type, labels):
        with self.lock:
            self.seen_at_put.append(len(self.issued))
            if self.sample and len(self.seen_at_put) % self.sample == 0:
                live = len(self.alive)
                self.live_peak = max(self.live_peak, live)
        return super().put(name, payload, content_type=content_type, labels=labels)


class IssuedLog:
    """Counts issue.done log records (the main thread logs each issuance as its batch lands)."""

    def __init__(self, caplog) -> None:
        self.caplog = caplog

    def __len__(self) -> int:
        return sum(1 for r in list(self.caplog.records) if getattr(r, "event", "") == "issue.done")


def test_pushes_start_while_issuance_goes_on(workdir, caplog, monkeypatch):
    monkeypatch.setattr(apply, "STAGE", 10)
    monkeypatch.setattr(apply, "BACKLOG_MIN", 8)
    monkeypatch.setattr(apply, "BACKLOG_MAX", 8)
    caplog.set_level("INFO", logger="certsync")
    cfg = many_certs(workdir, 60)
    provider = Watching(MemoryCloud(), IssuedLog(caplog))
    report = App(cfg, providers=lambda d: provider).apply()
    assert report.summary() == {"issue": 61, "push": 60}
    assert min(provider.seen_at_put) < 61  # the first push did not wait for the last issuance
    assert len(provider.cloud) == 60


@pytest.mark.parametrize("sizes", [(300, 1200)])
def test_payloads_alive_at_once_do_not_grow_with_n(tmp_path, monkeypatch, sizes):
    peaks = []
    alive = Alive(monkeypatch, render.Payload, Bundle)
    for n in sizes:
        folder = tmp_path / str(n)
        folder.mkdir()
        monkeypatch.chdir(folder)
        (folder / "sync.toml").write_text("")
        cfg = many_certs(folder, n)
        provider = Watching(MemoryCloud(), [], sample=25, alive=alive)
        report = App(cfg, providers=lambda d: provider).apply()
        assert report.summary() == {"issue": n + 1, "push": n}
        peaks.append(provider.live_peak)
    bound = apply.STAGE + apply.BACKLOG_MAX + 8  # one chunk being rendered + a full lane
    assert 0 < peaks[0] <= bound and 0 < peaks[1] <= bound, peaks


def pfx_config(workdir, n: int, key: str):
    body = (
        '\n[destination.vault]\nprovider = "aws"\nregion = "eu-west-1"\nconcurrency = 4\n'
        'max_calls_per_second = 5000\nformat = "pkcs12"\npkcs12_password_env = "PFX_PASSWORD"\n'
    )
    body += "".join(
        f'\n[certificate.r{i}]\nprofile = "tls-server"\nkey = "{key}"\n'
        f'common_name = "r{i}.example.internal"\ndestinations = ["vault"]\n'
        for i in range(n)
    )
    write_config(workdir / "sync.toml", body)
    cfg = config.load("sync.toml")
    App(cfg).init()
    return cfg


def test_rsa_keys_and_password_pfx_are_made_in_worker_processes(workdir, monkeypatch):
    import base64
    import multiprocessing

    from cryptography.hazmat.primitives.serialization import pkcs12

    from sync.pki import workers

    monkeypatch.setenv("CERTSYNC_CRYPTO_WORKERS", "2")
    monkeypatch.setenv("PFX_PASSWORD", "correct horse")
    n = workers.POOL_MIN + 2
    cfg = pfx_config(workdir, n, "rsa-2048")
    cloud = MemoryCloud()
    report = App(cfg, providers=lambda d: MemoryProvider(cloud)).apply()
    assert report.summary() == {"issue": n + 1, "push": n}
    assert len(multiprocessing.active_children()) >= 2  # the pool did the work
    for name, secret in cloud.items():
        key, cert, chain = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), b"correct horse")
        assert key.key_size == 2048 and cert.public_key() == key.public_key() and len(chain) == 1
    assert App(cfg, providers=lambda d: MemoryProvider(cloud)).apply().summary() == {"unchanged": n}


def test_no_workers_keeps_crypto_in_process(workdir, monkeypatch):
    from sync.pki import workers

    monkeypatch.setenv("CERTSYNC_CRYPTO_WORKERS", "0")
    assert workers.pool(1000) is None
    monkeypatch.setenv("CERTSYNC_CRYPTO_WORKERS", "2")
    assert workers.pool(workers.POOL_MIN - 1) is None  # too little work to start workers for
