"""A store URL's password never reaches a message: masked the way SQLAlchemy renders it."""

from __future__ import annotations

import os
import socket
import textwrap

import pytest

from sync import config
from sync.app import App
from sync.errors import StoreError
from sync.store import Store, redact_url
from tests.store.conftest import run_cli

SECRET = "S3cr3t-pa55word"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "url, shown",
    [
        (
            f"postgresql+psycopg://certsync:{SECRET}@db.internal:5432/certsync",
            "postgresql+psycopg://certsync:***@db.internal:5432/certsync",
        ),
        (
            f"postgresql+psycopg://certsync:{SECRET}@db.internal/certsync?sslmode=require",
            "postgresql+psycopg://certsync:***@db.internal/certsync?sslmode=require",
        ),
        (
            f"postgresql+psycopg://certsync:p@{SECRET}@db.internal/certsync",  # '@' not percent-encoded
            "postgresql+psycopg://certsync:***@db.internal/certsync",
        ),
        (
            f"postgresql+psycopg://certsync:{SECRET}@db.internal:notaport/certsync",  # SQLAlchemy cannot parse it
            "postgresql+psycopg://certsync:***@db.internal:notaport/certsync",
        ),
        ("sqlite:////var/lib/certsync/certsync.db", "sqlite:////var/lib/certsync/certsync.db"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://certsync:{SECRET}@127.0.0.1:{{port}}/certsync",  # nothing listens
        f"postgresql+psycopg://certsync:{SECRET}@127.0.0.1:notaport/certsync",  # unparsable
        f"postgresql+nosuchdriver://certsync:{SECRET}@127.0.0.1/certsync",  # no such driver
    ],
    ids=["refused", "unparsable", "no-driver"],
)
@pytest.mark.parametrize("create", [False, True])
def test_store_errors_never_show_the_password(url, create):
    with pytest.raises(StoreError) as caught:
        Store(url.replace("{port}", str(_closed_port())), create=create)
    message = str(caught.value)
    assert SECRET not in message and "***" in message and "\n" not in message
    assert message.startswith("cannot open store postgresql+")


def test_cli_error_never_shows_the_password(tmp_path, monkeypatch, capsys):
    port = _closed_port()
    url = f"postgresql+psycopg://certsync:{SECRET}@127.0.0.1:{port}/certsync"
    (tmp_path / "sync.toml").write_text(
        textwrap.dedent(f"""
        [store]
        url = "{url}"
    """)
    )
    for var in [v for v in os.environ if v.startswith("CERTSYNC_")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    for args in (["list"], ["init"], ["--debug", "list"]):
        code, out, err = run_cli(capsys, *args)
        assert code == 1
        assert SECRET not in out + err
        if "--debug" not in args:
            lines = err.strip().splitlines()  # (the CLI's log redaction may mask more)
            assert len(lines) == 1 and lines[0].startswith("error: cannot open store postgresql+psycopg://"), lines
            assert f"@127.0.0.1:{port}/certsync: " in lines[0] and "connection" in lines[0]


def test_library_never_keeps_a_config_password_in_messages(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "CERTSYNC_STORE__URL", f"postgresql+psycopg://certsync:{SECRET}@127.0.0.1:{_closed_port()}/certsync"
    )
    (tmp_path / "sync.toml").write_text("")
    with pytest.raises(StoreError) as caught:
        App(config.load(tmp_path / "sync.toml")).inventory()
    assert SECRET not in str(caught.value)
