"""PostgreSQL connections have a connect timeout and a statement timeout ([store] connect_timeout,
statement_timeout): a server that never answers, and a statement that runs too long, end in one
line (StoreError, exit 1) instead of a hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from sync import config
from sync.app import App
from sync.errors import StoreError
from sync.store import Store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections and never says a word (a hung server, a black hole)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_defaults():
    store = config.StoreConfig()
    assert store.connect_timeout == timedelta(seconds=10) and store.statement_timeout == timedelta(seconds=60)


def test_a_server_that_never_answers_fails_after_the_connect_timeout(silent_port):
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        Store(f"postgresql+psycopg://certsync@127.0.0.1:{silent_port}/certsync", connect_timeout=timedelta(seconds=2))
    assert time.monotonic() - started < 8
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot open store postgresql+psycopg://certsync@127.0.0.1")
    assert "timeout" in message.lower(), message


def test_cli_exits_1_with_one_line_after_the_connect_timeout(silent_port, tmp_path):
    (tmp_path / "sync.toml").write_text(
        textwrap.dedent("""
        [store]
        url = "postgresql+psycopg://certsync@127.0.0.1:{port}/certsync"
        connect_timeout = "2s"
        [ca.root]
        subject = "CN=Root"
        """).format(port=silent_port)
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sync", "plan"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open store "), result.stderr


def test_a_closed_port_fails_at_once_with_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as caught:
        Store(f"postgresql+psycopg://certsync@127.0.0.1:{port}/certsync", connect_timeout=timedelta(seconds=2))
    assert "\n" not in str(caught.value)


@pytest.mark.postgres
def test_a_statement_past_the_statement_timeout_is_one_line(postgres_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sync.toml").write_text(
        textwrap.dedent(f"""
        [store]
        url = "{postgres_url}"
        key_file = "certsync.key"
        statement_timeout = "1s"
        [ca.root]
        subject = "CN=Root"
        key = "ec-p256"
        """)
    )
    with App(config.load("sync.toml")) as app:
        app.init()
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            with app.store.session() as s:
                s.execute(text("SELECT pg_sleep(10)"))
        assert time.monotonic() - started < 6
    message = str(caught.value)
    assert "\n" not in message and "statement timeout" in message and "store.statement_timeout" in message, message


@pytest.mark.postgres
def test_statement_timeout_zero_means_none_and_url_options_are_kept(postgres_url):
    url = postgres_url + ("&" if "?" in postgres_url else "?") + "options=-c%20application_name%3Dkept"
    Store(postgres_url, create=True).close()
    store = Store(url, statement_timeout=timedelta(0))
    with store.session() as s:
        assert s.execute(text("SHOW statement_timeout")).scalar() == "0"
        assert s.execute(text("SHOW application_name")).scalar() == "kept"
    store.close()
    store = Store(url, statement_timeout=timedelta(seconds=90))
    with store.session() as s:
        assert s.execute(text("SHOW statement_timeout")).scalar() == "90s"
        assert s.execute(text("SHOW application_name")).scalar() == "kept"
    store.close()
