"""Migrations: upgrade / check / downgrade on SQLite and PostgreSQL; names and conventions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from searchsvc.db import migrate
from searchsvc.db.base import NAMING_CONVENTION, Base
from searchsvc.db.session import get_engine

TABLES = {
    "models",
    "profiles",
    "profile_layers",
    "plans",
    "validations",
    "jobs",
    "artifacts",
    "api_tokens",
    "hardware_profiles",
}


def _roundtrip(url: str) -> None:
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision(url)
    assert set(inspect(get_engine(url)).get_table_names()) >= TABLES
    migrate.check(url)  # models and migrations agree (raises otherwise)
    migrate.downgrade(url, "base")
    assert migrate.current_revision(url) is None
    assert not TABLES & set(inspect(get_engine(url)).get_table_names())
    migrate.upgrade(url)
    migrate.check(url)


def test_sqlite_upgrade_check_downgrade(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.service
def test_postgresql_upgrade_check_downgrade(pg_url: str) -> None:
    _roundtrip(pg_url)


def test_migration_files_are_named_by_date_and_slug() -> None:
    files = sorted((migrate.MIGRATIONS_DIR / "versions").glob("*.py"))
    assert files
    for path in files:
        assert re.fullmatch(r"\d{4}_\d{2}_\d{2}_\d{4}-[a-z0-9_]+\.py", path.name), path.name


def test_constraints_follow_the_naming_convention() -> None:
    assert Base.metadata.naming_convention == NAMING_CONVENTION
    for table in Base.metadata.tables.values():
        assert table.primary_key.name == f"pk_{table.name}"
        for fk in table.foreign_key_constraints:
            assert str(fk.name).startswith(f"fk_{table.name}_")


def test_cli_upgrade_works_from_any_directory(tmp_path: Path) -> None:
    env = {"BITBUDGET_DATA_DIR": str(tmp_path / "d"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert migrate.head_revision("sqlite://") in out.stdout
    assert (tmp_path / "d" / "bitbudget.db").is_file()
    out = subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", "db", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "agree" in out.stdout, out.stderr
