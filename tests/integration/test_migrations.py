"""Migrations: upgrade from empty and back on SQLite and PostgreSQL; models and migrations agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ledger.database import create_ledger_engine, current_revisions, head_revisions, migrate
from schemas.tables import Base

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
TABLES = {"scans", "results", "urgent_cases", "models"}


def test_upgrade_from_empty_matches_the_models_and_downgrade_empties(database_url: str) -> None:
    engine = create_ledger_engine(database_url)
    try:
        migrate(engine)
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
        assert current_revisions(engine) == head_revisions()
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []

        migrate(engine, "base", downgrade=True)
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        assert current_revisions(engine) == set()
        migrate(engine)  # and up again
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def cli_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    return {**env, "TRIAGE_DATABASE_URL": database_url, "TRIAGE_DATA_DIR": str(data_dir)}


def test_alembic_from_the_repo_root_and_triage_db_from_anywhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'ledger.db'}"
    env = cli_env(url, tmp_path / "data")
    alembic = [sys.executable, "-m", "alembic"]
    subprocess.run([*alembic, "upgrade", "head"], cwd=REPO_ROOT, env=env, check=True)
    engine = create_ledger_engine(url)
    assert current_revisions(engine) == head_revisions()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    triage = [sys.executable, "-m", "triage", "db"]
    down = subprocess.run(
        [*triage, "downgrade", "base"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert down.returncode == 0, down.stderr
    assert current_revisions(engine) == set()
    up = subprocess.run(
        [*triage, "upgrade"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    assert current_revisions(engine) == head_revisions()
    engine.dispose()
