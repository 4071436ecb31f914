"""Integrity of what is pushed: a certificate or CA certificate altered in the database (by someone
who can write to it but has no master key) is refused wherever certsync would send it out with, or
next to, a private key, and nothing reaches a destination. The tags are HMACs under a key derived
from the master key, bound to the row (name, version or generation, issuer link)."""

import json
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from sync import config
from sync.app import App
from sync.errors import CertsyncError
from sync.pki import certs
from sync.pki.render import RenderOptions
from tests.support.memory import MemoryCloud, MemoryProvider
from tests.unit.conftest import write_config

EXTRA = """
[destination.vault]
provider = "aws"
region = "eu-west-1"

[certificate.web]
profile = "tls-server"
common_name = "web.example.internal"
destinations = ["vault"]
"""
ALTERED = "stored certificate does not match its integrity tag (altered in the database?)"
UNTAGGED = (
    "stored certificate has no integrity tag and does not match its sealed key or its issuer's "
    "signature (altered in the database?)"
)


def der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def sql(workdir, statement: str, *params):
    with closing(sqlite3.connect(workdir / "certsync.db")) as db:
        rows = db.execute(statement, params).fetchall()
        db.commit()
    return rows


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sync", *args], capture_output=True, text=True, cwd=cwd, check=False)


@pytest.fixture
def cfg(workdir):
    write_config(workdir / "sync.toml", EXTRA)
    cfg = config.load("sync.toml")
    App(cfg).init()
    report = App(cfg, providers=lambda d: MemoryProvider(MemoryCloud())).apply()
    assert not report.failed
    return cfg


def forged_ca(subject: str, parent: certs.Issuer | None = None) -> certs.Issuer:
    key = certs.generate_key("ec-p256")
    return certs.Issuer(certs.create_ca(subject, key, timedelta(days=365), parent=parent), key)


def assert_refused_everywhere(cfg, workdir, message: str):
    """push, apply (a fresh, empty destination: everything would be pushed) and export refuse,
    with one line naming the row, and nothing reaches the destination."""
    cloud = MemoryCloud()
    report = App(cfg, providers=lambda d: MemoryProvider(cloud)).push("web")
    assert report.failed and [r.error for r in report.results if r.status == "failed"] == [message]
    report = App(cfg, providers=lambda d: MemoryProvider(cloud)).apply()
    assert report.failed and message in [r.error for r in report.results if r.status == "failed"]
    assert dict(cloud) == {}  # nothing written
    with pytest.raises(CertsyncError, match=f"^{re.escape(message)}$"):
        App(cfg).export("web", RenderOptions("json"))
    result = cli("export", "web", "--format", "pem", cwd=workdir)
    assert result.returncode == 1 and result.stdout == "" and result.stderr == f"error: {message}\n"


def test_a_root_replaced_by_another_ca_is_refused(cfg, workdir):
    other = forged_ca("CN=Test Root CA,O=certsync tests")
    sql(workdir, "UPDATE authorities SET cert_der = ? WHERE name = 'root'", der(other.certificate))
    assert_refused_everywhere(cfg, workdir, f"CA 'root' generation 1: {ALTERED}")


def test_a_leaf_replaced_by_another_is_refused(cfg, workdir):
    (api,) = sql(workdir, "SELECT cert_der FROM certificates WHERE name = 'api'")
    sql(workdir, "UPDATE certificates SET cert_der = ? WHERE name = 'web'", api[0])
    assert_refused_everywhere(cfg, workdir, f"certificate 'web' version 1: {ALTERED}")


def test_a_forged_chain_around_the_real_key_is_refused(cfg, workdir):
    """The attack: a chain of the attacker's own CAs ending in a leaf for the real public key. Every
    signature checks and the key matches the leaf, so only the tags can tell."""
    with App(cfg).store.transaction() as tx:
        real = tx.certificates.current("web").certificate
    root = forged_ca("CN=Test Root CA,O=certsync tests")
    issuing = forged_ca("CN=Test Issuing CA,O=certsync tests", parent=root)
    leaf = certs.issue_leaf(issuing, real.public_key(), common_name="web.example.internal", validity=timedelta(days=90))
    sql(workdir, "UPDATE authorities SET cert_der = ? WHERE name = 'root'", der(root.certificate))
    sql(workdir, "UPDATE authorities SET cert_der = ? WHERE name = 'issuing'", der(issuing.certificate))
    sql(workdir, "UPDATE certificates SET cert_der = ? WHERE name = 'web'", der(leaf))
    assert_refused_everywhere(cfg, workdir, f"certificate 'web' version 1: {ALTERED}")


def test_a_substituted_issuing_ca_does_not_sign(cfg, workdir):
    other = forged_ca("CN=Test Issuing CA,O=certsync tests")
    sql(workdir, "UPDATE authorities SET cert_der = ? WHERE name = 'issuing'", der(other.certificate))
    cloud = MemoryCloud()
    report = App(cfg, providers=lambda d: MemoryProvider(cloud)).renew("web")
    assert report.failed and f"CA 'issuing' generation 1: {ALTERED}" in {r.error for r in report.results}
    assert dict(cloud) == {}
    with App(cfg).store.transaction() as tx:
        assert [v.version for v in tx.certificates.versions_of("web")] == [1]
    result = cli("revoke", "web", "--reason", "superseded", cwd=workdir)  # signing a CRL: refused too
    assert result.returncode == 1 and result.stderr == f"error: CA 'issuing' generation 1: {ALTERED}\n"
    with App(cfg).store.transaction() as tx:
        assert tx.certificates.current("web").state == "active"


def test_plan_and_list_read_without_the_master_key(cfg, workdir, monkeypatch):
    (workdir / "certsync.key").rename(workdir / "elsewhere.key")
    assert App(cfg, providers=lambda d: MemoryProvider(MemoryCloud())).plan().changes
    assert {c.name for c in App(cfg).inventory().certificates} == {"api", "web"}


def test_rows_from_before_the_tags_are_tagged_once_checked(cfg, workdir):
    """A store upgraded to 0004 has no tags: the next run holding the master key (init, or the first
    use of a row) tags each row after checking it against its sealed key and its issuer's signature."""
    tags = "SELECT name, cert_tag IS NOT NULL FROM {} ORDER BY name"
    assert all(t for _, t in sql(workdir, tags.format("authorities")) + sql(workdir, tags.format("certificates")))
    sql(workdir, "UPDATE authorities SET cert_tag = NULL")
    sql(workdir, "UPDATE certificates SET cert_tag = NULL")
    cloud = MemoryCloud()
    report = App(cfg, providers=lambda d: MemoryProvider(cloud)).push("web")  # first use
    assert not report.failed and len(cloud) == 1
    assert sql(workdir, tags.format("authorities")) == [("issuing", 1), ("root", 1)]
    assert sql(workdir, tags.format("certificates")) == [("api", 0), ("web", 1)]
    App(cfg).init()  # init tags the rest
    assert sql(workdir, tags.format("certificates")) == [("api", 1), ("web", 1)]
    json.loads(App(cfg).export("api", RenderOptions("json")).body)


def test_an_untagged_row_that_does_not_check_is_refused(cfg, workdir):
    with App(cfg).store.transaction() as tx:
        real = tx.certificates.current("web").certificate
    root = forged_ca("CN=Test Root CA,O=certsync tests")
    issuing = forged_ca("CN=Test Issuing CA,O=certsync tests", parent=root)
    leaf = certs.issue_leaf(issuing, real.public_key(), common_name="web.example.internal", validity=timedelta(days=90))
    sql(workdir, "UPDATE authorities SET cert_tag = NULL, cert_der = ? WHERE name = 'root'", der(root.certificate))
    sql(
        workdir, "UPDATE authorities SET cert_tag = NULL, cert_der = ? WHERE name = 'issuing'", der(issuing.certificate)
    )
    sql(workdir, "UPDATE certificates SET cert_tag = NULL, cert_der = ? WHERE name = 'web'", der(leaf))
    App(cfg).init()  # does not tag what does not check, and does not fail
    assert sql(workdir, "SELECT cert_tag IS NULL FROM certificates WHERE name = 'web'") == [(1,)]
    assert_refused_everywhere(cfg, workdir, f"CA 'root' generation 1: {UNTAGGED}")  # checked root first
