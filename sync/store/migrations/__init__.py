"""Schema migrations (Alembic), run from code: there is no alembic.ini.

`certsync init` calls `upgrade(engine)`; every other command calls `check(engine)`, which refuses a
store whose schema is behind this certsync (run `certsync init` to upgrade it) or ahead of it.

Revisions live in `versions/` and must stay portable (SQLite and PostgreSQL): write
`sa.DateTime(timezone=True)` for the store's UTCDateTime, never import sync.store from a revision
(the models change; a revision must not). Make a new one with `python -m sync.store.migrations revision
MESSAGE` (autogenerates against a scratch SQLite store at head), then review it and run
tests/store (which checks the migrated schema against the models on both backends).
"""

from __future__ import annotations

from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from sync.errors import StoreError

SCRIPT_LOCATION = "sync.store:migrations"
INITIAL = "0001"  # the schema certsync created with create_all before it had migrations
# Concurrent `certsync init` runs against one PostgreSQL store: the second waits, then finds the
# schema at head. (The run lock lives in a table, which does not exist before the first upgrade.)
_PG_MIGRATION_LOCK = 0x63657274  # "cert"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    revision = _scripts().get_current_head()
    assert revision is not None  # the package ships its revisions
    return revision


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _has_tables(connection: Connection) -> bool:
    return inspect(connection).has_table("settings")


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to head in one transaction; returns (revision before, revision after)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        before = current(conn)
        if before is not None and not _known(before):
            raise _newer(before)
        cfg = alembic_config(conn)
        if before is None and _has_tables(conn):
            command.stamp(cfg, INITIAL)  # made before migrations existed: its schema is 0001
            before = INITIAL
        if before != head():
            command.upgrade(cfg, "head")
    return before, head()


def check(connection: Connection) -> None:
    """Raise StoreError (one line, saying what to run) unless the schema is at head."""
    revision = current(connection)
    if revision == head():
        return
    if revision is None:
        if not _has_tables(connection):
            raise StoreError("the store is not initialised: run `certsync init` first")
        revision = "unversioned"
    elif not _known(revision):
        raise _newer(revision)
    raise StoreError(
        f"the store's schema is out of date (at {revision}, this certsync needs {head()}): "
        "run `certsync init` to upgrade it"
    )


def _newer(revision: str) -> StoreError:
    return StoreError(
        f"the store's schema ({revision}) is newer than this certsync knows (it needs {head()}): upgrade certsync"
    )
