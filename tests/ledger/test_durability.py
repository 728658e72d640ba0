"""SQLite ledger durability: what is acknowledged survives a power loss."""

from __future__ import annotations

from pathlib import Path

from ledger.database import create_ledger_engine


def test_sqlite_commits_are_on_disk_before_they_return(tmp_path: Path) -> None:
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        with engine.connect() as connection:
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
    finally:
        engine.dispose()
    assert journal == "wal"
    assert synchronous == 2  # FULL: WAL with NORMAL may roll back the last commits
