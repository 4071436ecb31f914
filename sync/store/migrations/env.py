"""Alembic environment. Run from code (sync.store.migrations): the caller passes its open connection in
config.attributes["connection"]; `sqlalchemy.url` is used when there is none (or offline, --sql)."""

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from sync.store.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(kind, obj, autogen_context):
    """Autogenerate writes the decorator's portable column type: revisions never import sync.store."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, render_item=_render_item, **kwargs)


def run_with(connection) -> None:
    # SQLite cannot ALTER most things: later revisions use batch mode (copy and move) there.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    run_with(config.attributes["connection"])
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url", ""), poolclass=NullPool)
    with engine.connect() as connection:
        run_with(connection)
        connection.commit()
    engine.dispose()
