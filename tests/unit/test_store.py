"""Keys at rest: encrypted, bound to their row, and a missing or wrong master key is an error."""

import base64
import os
import sqlite3
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from sync import config
from sync.app import App
from sync.errors import LockError, MasterKeyError, StoreError
from sync.pki.render import RenderOptions


def test_init_creates_private_files_and_is_idempotent(workdir):
    cfg = config.load("sync.toml")
    first = App(cfg).init().cas
    assert [s.created for s in first] == [True, True]
    for name in ("certsync.db", "certsync.key"):
        assert stat.S_IMODE(os.stat(workdir / name).st_mode) == 0o600
    second = App(cfg).init().cas
    assert [s.created for s in second] == [False, False]
    assert [s.subject for s in second] == [s.subject for s in first]


def test_private_keys_are_not_stored_in_clear(workdir):
    cfg = config.load("sync.toml")
    App(cfg).init()
    App(cfg).apply()
    payload = App(cfg).export("api", RenderOptions("pem"))
    key_pem = payload.body[payload.body.index("-----BEGIN PRIVATE KEY") :]
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    raw = (workdir / "certsync.db").read_bytes()
    for extra in workdir.glob("certsync.db-*"):
        raw += extra.read_bytes()
    assert der not in raw and key_pem.encode() not in raw
    with sqlite3.connect(workdir / "certsync.db") as db:
        blobs = [row[0] for row in db.execute("select key_enc from certificates")] + [
            row[0] for row in db.execute("select key_enc from authorities")
        ]
    assert len(blobs) == 3 and all(b[:1] == b"\x01" and der not in b for b in blobs)


def test_missing_master_key_is_an_error_not_a_new_key(workdir):
    cfg = config.load("sync.toml")
    App(cfg).init()
    App(cfg).apply()
    (workdir / "certsync.key").unlink()
    assert App(cfg).inventory().certificates[0].name == "api"  # reading facts needs no key
    with pytest.raises(MasterKeyError, match="does not exist"):
        App(cfg).export("api", RenderOptions("pem"))
    with pytest.raises(MasterKeyError):
        App(cfg).init()  # init must not quietly make a new key for an existing store
    assert not (workdir / "certsync.key").exists()


def test_wrong_master_key_is_refused(workdir, monkeypatch):
    cfg = config.load("sync.toml")
    App(cfg).init()
    App(cfg).apply()
    monkeypatch.setenv("CERTSYNC_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(MasterKeyError, match="does not match"):
        App(cfg).export("api", RenderOptions("pem"))


def test_master_key_from_environment(workdir, master_key_env):
    cfg = config.load("sync.toml")
    App(cfg).init()
    assert not (workdir / "certsync.key").exists()
    App(cfg).apply()
    assert App(cfg).inventory().certificates[0].name == "api"


def test_commands_before_init_say_so(workdir):
    with pytest.raises(StoreError, match="certsync init"):
        App(config.load("sync.toml")).inventory()
    assert not (workdir / "certsync.db").exists()


def test_key_blob_bound_to_its_row(workdir):
    cfg = config.load("sync.toml")
    App(cfg).init()
    with sqlite3.connect(workdir / "certsync.db") as db:
        root_blob = db.execute("select key_enc from authorities where name='root'").fetchone()[0]
        db.execute("update authorities set key_enc=? where name='issuing'", (root_blob,))
    report = App(cfg).apply()
    assert [r.error for r in report.failed] == [
        f"cannot decrypt authority:issuing:1: wrong master key "
        f"({workdir / 'certsync.key'}) or the stored value was altered"
    ]


def test_store_lock_is_exclusive(workdir):
    cfg = config.load("sync.toml")
    App(cfg).init()
    app = App(cfg)
    with app.lock():
        with pytest.raises(LockError, match="another run holds the store lock"):
            with App(cfg).lock():
                pass
    with app.lock():  # released
        pass
