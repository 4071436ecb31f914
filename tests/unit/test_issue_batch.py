"""Batched issuance (enroll.issue_many behind `apply`): one transaction per batch, and a
certificate that fails still fails alone."""
from datetime import timedelta

import pytest
from sqlalchemy import event

from sync import commands, config, enroll
from sync.ca import utcnow
from sync.errors import StoreError
from tests.unit.conftest import write_config

MANY = """
[certificate.bad]
profile = "tls-server"
common_name = "bad.elsewhere.test"
""" + "".join(f"""
[certificate.c{i}]
profile = "tls-server"
common_name = "c{i}.example.internal"
""" for i in range(7))


@pytest.fixture
def cfg(workdir):
    write_config(workdir / "sync.toml", MANY)
    cfg = config.load("sync.toml")
    commands.init(cfg)
    return cfg


def count_commits(store):
    commits = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    return commits


def test_batches_share_transactions_and_a_policy_failure_stays_alone(cfg):
    store = commands.open_store(cfg)
    commits = count_commits(store)
    names = ["api", "bad", *(f"c{i}" for i in range(7))]
    results = list(enroll.issue_many(cfg, store, [enroll.IssueRequest(n) for n in names], batch_size=3))
    assert [r.name for r, _ in results] == names                      # request order
    failed = {r.name: str(o) for r, o in results if isinstance(o, Exception)}
    assert list(failed) == ["bad"] and "allowed_domains" in failed["bad"]
    assert len(commits) == 3                                           # 9 requests, batches of 3
    with store.session() as session:
        latest = {row.name: (row.version, row.state) for row in store.latest_versions(session)}
    assert latest == {n: (1, "active") for n in names if n != "bad"}


def test_apply_reports_like_before_and_renewal_supersedes(cfg):
    t0 = utcnow()
    report = commands.apply(cfg, now=t0)
    assert report.summary() == {"issue": 8, "failed": 1}
    assert [r.error for r in report.failed][0].startswith("profile 'tls-server': DNS name 'bad.elsewhere.test'")
    done = [r for r in report.results if r.status == "done"]
    assert all(r.detail.startswith("version 1, serial ") for r in done)
    report = commands.apply(cfg, now=t0 + timedelta(days=61))
    assert report.summary() == {"renew": 8, "failed": 1}
    store = commands.open_store(cfg)
    with store.session() as session:
        assert [(v.version, v.state) for v in store.latest_versions_of(session, "c3")] == [
            (2, "active"), (1, "superseded")]
        assert len(store.current_many(session, ["api", "c0", "bad"])) == 2


def test_a_store_error_fails_only_its_certificate(cfg, monkeypatch):
    store = commands.open_store(cfg)
    real = store.add_certificates

    def refuse_c2(session, values):
        if any(v["name"] == "c2" for v in values):
            raise StoreError("store error: IntegrityError: refused for the test")
        real(session, values)

    monkeypatch.setattr(store, "add_certificates", refuse_c2)
    names = ["api", "c1", "c2", "c3"]
    results = dict((r.name, o) for r, o in enroll.issue_many(cfg, store, [enroll.IssueRequest(n) for n in names]))
    assert isinstance(results["c2"], StoreError), results
    assert all(isinstance(results[n], enroll.Issued) for n in ("api", "c1", "c3")), results
    with store.session() as session:
        assert sorted(r.name for r in store.latest_versions(session)) == ["api", "c1", "c3"]


def test_the_issuing_ca_key_is_decrypted_once_per_run(cfg, monkeypatch):
    store = commands.open_store(cfg)
    calls = []
    real = store.issuer
    monkeypatch.setattr(store, "issuer", lambda *a: calls.append(1) or real(*a))
    list(enroll.issue_many(cfg, store, [enroll.IssueRequest(f"c{i}") for i in range(7)], batch_size=2))
    assert len(calls) == 1
