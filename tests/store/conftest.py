"""Store behaviour on both backends: the `backend` fixture runs a test on SQLite and PostgreSQL.

PostgreSQL: `CERTSYNC_TEST_POSTGRES_URL` (a server URL whose user may CREATE DATABASE) is used
when set; otherwise each pytest process (each xdist worker) starts a throwaway cluster on a free
port the first time a test needs it (tests/support/postgres.py). Either way every worker works in
its own database (CREATE DATABASE with a unique name, dropped at the end), emptied before each
test. Without PostgreSQL installed the PostgreSQL cases fail and say how to get it; set
CERTSYNC_TEST_POSTGRES=skip to skip them instead. Select or leave them out with `-m postgres`.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import postgres

STORE_CONFIG = """
[store]
url = "{url}"
key_file = "certsync.key"

[ca.root]
subject = "CN=Store Test Root CA,O=certsync tests"
key = "ec-p256"
validity = "3650d"

[ca.issuing]
parent = "root"
subject = "CN=Store Test Issuing CA,O=certsync tests"
key = "ec-p256"
validity = "1825d"

[profile.tls]
ca = "issuing"
key = "ec-p256"
validity = "90d"
allowed_domains = ["*.example.internal"]

[certificate.api]
profile = "tls"
dns_names = ["api.example.internal"]

[certificate.web]
profile = "tls"
dns_names = ["web.example.internal", "www.example.internal"]

[certificate.db]
profile = "tls"
dns_names = ["db.example.internal"]
"""
CERT_NAMES = ["api", "db", "web"]


@pytest.fixture(scope="session")
def postgres_server():
    """URL of a PostgreSQL server this session may create databases on."""
    if os.environ.get(postgres.URL_ENV):
        yield os.environ[postgres.URL_ENV]
        return
    try:
        cluster = postgres.Cluster().start()
    except postgres.PostgresUnavailable as exc:
        if os.environ.get("CERTSYNC_TEST_POSTGRES") == "skip":
            pytest.skip(f"PostgreSQL: {exc}")
        pytest.fail(f"PostgreSQL: {exc}", pytrace=False)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_database(postgres_server):
    """This worker's own database on the server (parallel-safe under pytest-xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"certsync_test_{worker}_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(postgres_server, name)
    yield url
    if os.environ.get(postgres.URL_ENV):  # a throwaway cluster goes away whole
        postgres.drop_database(postgres_server, name)


@pytest.fixture
def postgres_url(postgres_database):
    """This worker's database, empty."""
    postgres.reset_database(postgres_database)
    return postgres_database


@dataclass
class Backend:
    name: str  # sqlite | postgresql
    url: str


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request, tmp_path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path}/certsync.db")
    return Backend("postgresql", request.getfixturevalue("postgres_url"))


@pytest.fixture
def store_dir(backend, tmp_path, monkeypatch) -> Path:
    """A folder with sync.toml pointing at the backend's store; the master key is a file in it."""
    monkeypatch.delenv("CERTSYNC_MASTER_KEY", raising=False)
    for var in [v for v in os.environ if v.startswith("CERTSYNC_STORE__")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sync.toml").write_text(textwrap.dedent(STORE_CONFIG.format(url=backend.url)))
    return tmp_path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`certsync ARGS` in this process: (exit code, stdout, stderr)."""
    from sync.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
