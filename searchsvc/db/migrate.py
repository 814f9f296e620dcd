"""Alembic, run programmatically: ``upgrade head`` at start, ``check`` in tests, from any cwd.

The migration scripts live in the repository's top-level ``migrations/`` folder (fixed by the
design), found next to the ``searchsvc`` package (the package is installed editable, and the
Docker image installs it the same way). ``searchsvc/alembic.ini`` points there too, for
``alembic -c searchsvc/alembic.ini …``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from searchsvc.db.session import get_engine

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "upgrade",
    "downgrade",
    "check",
    "current_revision",
    "head_revision",
]

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_INI = Path(__file__).resolve().parents[1] / "alembic.ini"


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` whose script location is absolute (cwd does not matter)."""
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise RuntimeError(
            f"migrations not found at {MIGRATIONS_DIR}; install bitbudget editable "
            "(pip install -e .) from the repository so the top-level migrations/ folder is kept"
        )
    cfg = Config(str(_INI)) if _INI.is_file() else Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


_LOCK_ID = 7306215  # PostgreSQL advisory lock: the API and workers may start together


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (one process at a time on PostgreSQL)."""
    with get_engine(url).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        cfg = alembic_config(url)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Take the database at ``url`` down to ``revision``."""
    with get_engine(url).begin() as connection:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


def check(url: str) -> None:
    """Raise if the tables and the migrations disagree (``alembic check``)."""
    with get_engine(url).begin() as connection:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = connection
        command.check(cfg)


def current_revision(url: str) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(url: str) -> str | None:
    """The newest migration's revision."""
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()
