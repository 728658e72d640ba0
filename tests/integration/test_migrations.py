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


def test_0004_lets_a_key_image_wait_and_its_downgrade_drops_what_0003_cannot_hold(
    database_url: str,
) -> None:
    import uuid

    from ledger import scans as ledger
    from ledger.statements import deliveries
    from schemas.tables import utcnow

    engine = create_ledger_engine(database_url)
    try:
        migrate(engine)
        (scan_id,) = ledger.add_scans(
            engine, [ledger.NewScan(str(uuid.uuid4()), bytes(4096), None, "x")], "routine"
        ).new
        with engine.connect() as connection:
            study_id = connection.scalar(
                sa.text("SELECT study_id FROM scans WHERE id = :id"), {"id": scan_id}
            )

        def row(channel: str, status: str, decision: int) -> dict[str, object]:
            return {
                "id": str(uuid.uuid4()), "study_id": study_id, "decision": decision,
                "channel": channel, "idempotency_key": f"{study_id}.{decision}.{channel}",
                "status": status, "attempts": 0, "created_at": utcnow(),
                "next_attempt_at": utcnow(),
            }  # fmt: skip

        with engine.begin() as connection:
            connection.execute(deliveries.insert(), [row("key_image", "waiting", 1)])
            connection.execute(deliveries.insert(), [row("dicom", "pending", 1)])
        for bad in (row("carrier-pigeon", "pending", 2), row("dicom", "lost", 3)):
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
                connection.execute(deliveries.insert(), [bad])

        migrate(engine, "0003", downgrade=True)
        with engine.connect() as connection:
            left = connection.execute(sa.text("SELECT channel, status FROM deliveries")).all()
        assert [tuple(r) for r in left] == [("dicom", "pending")]
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(deliveries.insert(), [row("key_image", "pending", 4)])
        migrate(engine)
        assert current_revisions(engine) == head_revisions()
    finally:
        engine.dispose()
