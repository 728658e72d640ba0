"""gateway.operations.result_counts: results per model version, counted once each, on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from gateway.operations.result_counts import SETTLE_S, ResultCounts
from ledger.database import upgrade_schema
from schemas.tables import Result
from tests.gateway.operations.scan_rows import insert_scans

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


@pytest.fixture
def ledger(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


def add_results(engine: sa.Engine, rows: list[tuple[str, str, float]]) -> None:
    """Results given as (scan id, model version, age in seconds before NOW)."""
    with engine.begin() as connection:
        insert_scans(connection, [(sid, "routine", "done", age) for sid, _, age in rows], NOW)
        connection.execute(
            sa.insert(Result),
            [
                {
                    "scan_id": sid, "predicted": 0, "p0": 1.0, "p1": 0.0, "p2": 0.0,
                    "urgent": False, "model_version": version,
                    "classified_at": NOW - timedelta(seconds=age),
                }
                for sid, version, age in rows
            ],
        )  # fmt: skip


def test_counts_old_and_new_rows_once_each(ledger: sa.Engine) -> None:
    add_results(ledger, [("a", "v1", 10 * SETTLE_S), ("b", "v1", 5), ("c", "v2", 1)])
    counts = ResultCounts()
    assert counts.read(ledger, NOW) == {"v1": 2, "v2": 1}
    assert counts.read(ledger, NOW) == {"v1": 2, "v2": 1}  # read again: no double count
    later = NOW + timedelta(seconds=2 * SETTLE_S)  # b and c are settled now
    assert counts.read(ledger, later) == {"v1": 2, "v2": 1}


def test_a_row_committed_late_within_the_lag_is_counted(ledger: sa.Engine) -> None:
    counts = ResultCounts()
    assert counts.read(ledger, NOW) == {}
    add_results(ledger, [("late", "v1", SETTLE_S / 2)])  # classified before the last read
    assert counts.read(ledger, NOW + timedelta(seconds=1)) == {"v1": 1}


def test_removed_old_results_do_not_lower_the_count(ledger: sa.Engine) -> None:
    add_results(ledger, [("a", "v1", 10 * SETTLE_S), ("b", "v1", 10 * SETTLE_S)])
    counts = ResultCounts()
    assert counts.read(ledger, NOW) == {"v1": 2}
    with ledger.begin() as connection:
        connection.execute(sa.delete(Result).where(Result.scan_id == "a"))
    add_results(ledger, [("c", "v1", 0)])
    assert counts.read(ledger, NOW + timedelta(seconds=1)) == {"v1": 3}
    assert ResultCounts().read(ledger, NOW) == {"v1": 2}  # a new process counts what is there
