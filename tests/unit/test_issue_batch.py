"""Batched issuance (issue_many behind `apply`): one transaction per batch, and a
certificate that fails still fails alone."""

from datetime import timedelta

import pytest
from sqlalchemy import event

from sync import config
from sync.app import App
from sync.ca.issue import IssueRequest, Issued, issue_many
from sync.store.authorities import Authorities
from sync.store.certificates import Certificates
from sync.clock import utcnow
from sync.errors import StoreError
from tests.unit.conftest import write_config

MANY = """
[certificate.bad]
profile = "tls-server"
common_name = "bad.elsewhere.test"
""" + "".join(
    f"""
[certificate.c{i}]
profile = "tls-server"
common_name = "c{i}.example.internal"
"""
    for i in range(7)
)


@pytest.fixture
def cfg(workdir):
    write_config(workdir / "sync.toml", MANY)
    cfg = config.load("sync.toml")
    App(cfg).init()
    return cfg


def count_commits(store):
    commits = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    return commits


def test_batches_share_transactions_and_a_policy_failure_stays_alone(cfg):
    store = App(cfg).store
    store.master_key()  # loaded once, on first use: its read is not a batch
    commits = count_commits(store)
    names = ["api", "bad", *(f"c{i}" for i in range(7))]
    results = list(issue_many(cfg, store, [IssueRequest(n) for n in names], utcnow(), batch_size=3))
    assert [r.name for r, _ in results] == names  # request order
    failed = {r.name: str(o) for r, o in results if isinstance(o, Exception)}
    assert list(failed) == ["bad"] and "allowed_domains" in failed["bad"]
    assert len(commits) == 3  # 9 requests, batches of 3
    with store.transaction() as tx:
        latest = {row.name: (row.version, row.state) for row in tx.certificates.latest_versions()}
    assert latest == {n: (1, "active") for n in names if n != "bad"}


def test_apply_reports_like_before_and_renewal_supersedes(cfg):
    t0 = utcnow()
    report = App(cfg, now=t0).apply()
    assert report.summary() == {"issue": 8, "failed": 1}
    assert [r.error for r in report.failed][0].startswith("profile 'tls-server': DNS name 'bad.elsewhere.test'")
    done = [r for r in report.results if r.status == "done"]
    assert all(r.detail.startswith("version 1, serial ") for r in done)
    report = App(cfg, now=t0 + timedelta(days=61)).apply()
    assert report.summary() == {"renew": 8, "failed": 1}
    store = App(cfg).store
    with store.transaction() as tx:
        assert [(v.version, v.state) for v in tx.certificates.versions_of("c3")] == [(2, "active"), (1, "superseded")]
        assert len(tx.certificates.current_many(["api", "c0", "bad"])) == 2


def test_a_store_error_fails_only_its_certificate(cfg, monkeypatch):
    store = App(cfg).store
    real = Certificates.add_many

    def refuse_c2(self, values):
        if any(v["name"] == "c2" for v in values):
            raise StoreError("store error: IntegrityError: refused for the test")
        real(self, values)

    monkeypatch.setattr(Certificates, "add_many", refuse_c2)
    names = ["api", "c1", "c2", "c3"]
    results = dict((r.name, o) for r, o in issue_many(cfg, store, [IssueRequest(n) for n in names], utcnow()))
    assert isinstance(results["c2"], StoreError), results
    assert all(isinstance(results[n], Issued) for n in ("api", "c1", "c3")), results
    with store.transaction() as tx:
        assert sorted(r.name for r in tx.certificates.latest_versions()) == ["api", "c1", "c3"]


def test_the_issuing_ca_key_is_decrypted_once_per_run(cfg, monkeypatch):
    store = App(cfg).store
    calls = []
    real = Authorities.issuer
    monkeypatch.setattr(Authorities, "issuer", lambda *a: calls.append(1) or real(*a))
    list(issue_many(cfg, store, [IssueRequest(f"c{i}") for i in range(7)], utcnow(), batch_size=2))
    assert len(calls) == 1
