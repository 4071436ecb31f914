"""The store behaves the same on SQLite and PostgreSQL: init, issue and record, keys encrypted at
rest, wrong master key refused, every column type round-trips."""

from __future__ import annotations

import base64
import os
from datetime import timedelta, UTC

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import MetaData, create_engine, select

from sync import config
from sync.app import App
from sync.pki import render
from sync.errors import MasterKeyError, StoreError
from sync.store.models import Authority, Certificate, Setting
from tests.store.conftest import CERT_NAMES


def _cfg():
    return config.load("sync.toml")


def test_init_creates_the_store_and_is_idempotent(store_dir):
    cfg = _cfg()
    first = App(cfg).init().cas
    assert [s.created for s in first] == [True, True]
    second = App(cfg).init().cas
    assert [s.created for s in second] == [False, False]
    assert [(s.subject, s.not_after) for s in second] == [(s.subject, s.not_after) for s in first]


def test_commands_before_init_say_so(store_dir):
    with pytest.raises(StoreError, match=r"not initialised: run `certsync init` first|no store at"):
        App(_cfg()).inventory()


def test_apply_issues_records_and_round_trips_every_column_type(store_dir):
    cfg = _cfg()
    App(cfg).init()
    report = App(cfg).apply()
    assert (
        sorted(r.action.cert for r in report.results if r.action.kind == "issue" and r.status == "done") == CERT_NAMES
    )
    assert App(cfg).apply().results == []  # nothing left to do
    inventory = App(cfg).inventory()
    assert [(c.name, c.version, c.state) for c in inventory.certificates] == [(n, 1, "active") for n in CERT_NAMES]

    store = App(cfg).store
    with store.transaction() as tx:
        s = tx.session
        web = tx.certificates.current("web")
        cert = x509.load_der_x509_certificate(web.cert_der)  # LargeBinary: bytes back, intact
        assert web.sans == ["DNS:web.example.internal", "DNS:www.example.internal"]  # JSON
        for stamp in (web.not_before, web.not_after, web.created_at):  # UTCDateTime: aware, UTC
            assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
        assert web.not_after == cert.not_valid_after_utc and web.not_before == cert.not_valid_before_utc
        assert web.revoked_at is None
        assert web.authority.name == "issuing" and web.authority.parent.name == "root"  # foreign keys
        assert isinstance(s.get(Setting, "verifier").value, bytes)
    store.close()
    pem = App(cfg).export("web", render.RenderOptions("pem")).body
    assert pem.startswith("-----BEGIN CERTIFICATE-----")


def test_private_keys_are_encrypted_at_rest(store_dir, backend):
    cfg = _cfg()
    App(cfg).init()
    App(cfg).apply()
    secrets = []
    for name in CERT_NAMES:
        body = App(cfg).export(name, render.RenderOptions("pem")).body
        key_pem = body[body.index("-----BEGIN PRIVATE KEY") :].encode()
        key = serialization.load_pem_private_key(key_pem, None)
        secrets += [
            key_pem,
            key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        ]
    # Every value of every table, read raw (no model, no decorator): no key in clear anywhere.
    engine = create_engine(backend.url)
    metadata = MetaData()
    metadata.reflect(engine)
    blobs = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    data = value if isinstance(value, bytes) else str(value).encode()
                    assert not any(secret in data for secret in secrets), f"a private key in clear in {table.name}"
            if "key_enc" in table.c:
                blobs += [v for (v,) in conn.execute(select(table.c.key_enc))]
    engine.dispose()
    assert len(blobs) == 2 + len(CERT_NAMES)
    assert all(isinstance(b, bytes) and b[:1] == b"\x01" for b in blobs)  # keyring's sealed format


def test_wrong_master_key_is_refused(store_dir, monkeypatch):
    cfg = _cfg()
    App(cfg).init()
    monkeypatch.setenv("CERTSYNC_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    assert App(cfg).inventory().certificates == []  # reading needs no key
    with pytest.raises(MasterKeyError, match="does not match"):
        App(cfg).apply()  # issuing opens the CA key: the wrong master key is refused
    with pytest.raises(MasterKeyError, match="does not match"):
        App(cfg).init()  # init never replaces the key of an existing store


def test_versions_and_revocation_state_are_recorded(store_dir):
    cfg = _cfg()
    App(cfg).init()
    App(cfg).apply()
    App(cfg).renew("api")
    summary, _ = App(cfg).revoke("db", "keyCompromise")
    store = App(cfg).store
    with store.transaction() as tx:
        s = tx.session
        api = tx.certificates.versions_of("api")
        assert [(r.version, r.state) for r in api] == [(2, "active"), (1, "superseded")]
        db = tx.certificates.versions_of("db")[0]
        assert db.state == "revoked" and db.revocation_reason == summary["reason"]
        assert db.revoked_at.tzinfo is not None and db.revoked_at.astimezone(UTC) == db.revoked_at
        issuing = tx.authorities.active("issuing")
        assert issuing.crl_number >= 1 and issuing.crl_der
        assert s.scalars(select(Certificate.serial)).all()
        assert len(s.scalars(select(Authority)).all()) == 2
    store.close()
