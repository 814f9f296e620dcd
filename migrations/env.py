"""Alembic environment: compares against ``searchsvc.db.tables`` and runs on a given connection."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from searchsvc.db import tables  # noqa: F401  (registers every table on the metadata)
from searchsvc.db.base import Base
from searchsvc.db.session import get_engine

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)


def _url() -> str:
    """The configured URL, else the service settings (``BITBUDGET_DATABASE_URL``)."""
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from searchsvc.settings import get_settings

    return get_settings().database


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Use the connection handed over by ``searchsvc.db.migrate``, or open one."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with get_engine(_url()).begin() as conn:
        _run(conn)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
