"""Alembic migrations on both backends: the migrated schema equals the models, a store behind head
is refused with one line until `certsync init` upgrades it (data kept), a store from before
migrations is adopted, a store from a newer certsync is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from sync import config
from sync.app import App
from sync.store import migrations
from sync.errors import StoreError
from sync.store.models import Base
from tests.store.conftest import CERT_NAMES, run_cli

DATA = Path(__file__).parent / "data"


def _diffs(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _alembic(url: str, verb: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            getattr(command, verb)(migrations.alembic_config(conn), revision)
    finally:
        engine.dispose()


def test_migrated_schema_equals_the_models(store_dir, backend):
    App(config.load("sync.toml")).init()
    assert _diffs(backend.url) == []
    engine = create_engine(backend.url)
    with engine.connect() as conn:
        assert migrations.current(conn) == migrations.head()
        assert set(inspect(conn).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
    engine.dispose()


def test_downgrade_to_base_and_back(store_dir, backend):
    App(config.load("sync.toml")).init()
    _alembic(backend.url, "downgrade", "base")
    engine = create_engine(backend.url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    _alembic(backend.url, "upgrade", "head")
    assert _diffs(backend.url) == []


def test_store_behind_head_is_refused_until_init_upgrades_it(store_dir, backend, capsys):
    cfg = config.load("sync.toml")
    App(cfg).init()
    App(cfg).apply()
    _alembic(backend.url, "downgrade", migrations.INITIAL)  # as a certsync of revision 0001 left it

    with pytest.raises(
        StoreError,
        match=rf"schema is out of date \(at {migrations.INITIAL}, this certsync needs "
        rf"{migrations.head()}\): run `certsync init` to upgrade it",
    ):
        App(cfg).inventory()
    code, _, err = run_cli(capsys, "list")
    assert code == 1
    assert err.strip().splitlines() == [
        f"error: the store's schema is out of date (at {migrations.INITIAL}, this certsync needs "
        f"{migrations.head()}): run `certsync init` to upgrade it"
    ]

    code, _, err = run_cli(capsys, "init")
    assert code == 0, err
    assert _diffs(backend.url) == []
    assert [c.name for c in App(cfg).inventory().certificates] == CERT_NAMES  # data kept
    assert App(cfg).apply().results == []


def test_store_made_before_migrations_is_adopted(store_dir, backend):
    engine = create_engine(backend.url)
    lines = (DATA / f"pre_migrations_{backend.name}.sql").read_text().splitlines()
    ddl = "\n".join(line for line in lines if not line.startswith("--"))
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.execute(text(statement))
    engine.dispose()
    cfg = config.load("sync.toml")
    with pytest.raises(StoreError, match=r"out of date \(at unversioned, .*\): run `certsync init`"):
        App(cfg).inventory()
    App(cfg).init()
    App(cfg).apply()
    assert _diffs(backend.url) == []
    assert [c.name for c in App(cfg).inventory().certificates] == CERT_NAMES


def test_store_from_a_newer_certsync_is_refused(store_dir, backend):
    cfg = config.load("sync.toml")
    App(cfg).init()
    engine = create_engine(backend.url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for call in (lambda: App(cfg).inventory(), lambda: App(cfg).init()):
        with pytest.raises(StoreError, match=r"schema \(9999\) is newer than this certsync knows .*: upgrade certsync"):
            call()


def test_upgrade_to_0004_tags_the_stored_certificates_once_checked(store_dir, backend):
    """0004 adds the integrity tags empty (a migration has no master key); the `init` that upgrades
    tags every row that checks, and what is exported afterwards is checked against them."""
    from sync.pki.render import RenderOptions

    cfg = config.load("sync.toml")
    App(cfg).init()
    App(cfg).apply()
    _alembic(backend.url, "downgrade", "0003")
    _alembic(backend.url, "upgrade", "0004")
    engine = create_engine(backend.url)
    untagged = (
        "SELECT (SELECT count(*) FROM authorities WHERE cert_tag IS NULL) + "
        "(SELECT count(*) FROM certificates WHERE cert_tag IS NULL)"
    )
    with engine.connect() as conn:
        assert conn.execute(text(untagged)).scalar() == 2 + len(CERT_NAMES)
    assert App(cfg).init().untagged == []
    with engine.connect() as conn:
        assert conn.execute(text(untagged)).scalar() == 0
    engine.dispose()
    for name in CERT_NAMES:
        App(cfg).export(name, RenderOptions("json"))
