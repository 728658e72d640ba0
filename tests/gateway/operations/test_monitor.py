"""gateway.operations.monitor and `triage stats`: queue depths from a real Redis, ages from a
real ledger (how the broker counts its lists: tests/gateway/broker/test_server.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa
from typer.testing import CliRunner

from gateway.broker.server import redis_client
from gateway.operations.monitor import take_snapshot
from schemas.settings import get_settings
from schemas.tables import Base, Result, Scan, Study, UrgentCase
from testkit.services import redis_url_with_database
from tests.gateway.operations.scan_rows import insert_scans

MONITOR_DB = 13  # a Redis database of its own, so other tests' queues do not count


@pytest.fixture
def broker(redis_server: str) -> redis.Redis:
    url = redis_url_with_database(redis_server, MONITOR_DB)
    client = redis_client(url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def ledger(broker: redis.Redis, database_url: str, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    """A ledger with scans waiting behind each queue, and the settings pointing at it."""
    kwargs = broker.connection_pool.connection_kwargs
    monkeypatch.setenv(
        "TRIAGE_REDIS_URL", f"redis://{kwargs['host']}:{kwargs['port']}/{MONITOR_DB}"
    )
    monkeypatch.setenv("TRIAGE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    engine = sa.create_engine(database_url)
    Base.metadata.create_all(engine)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        rows = [
            ("r-old", "routine", "queued", 120),
            ("r-new", "routine", "queued", 10),
            ("s-1", "stat", "queued", 30),
            ("busy", "routine", "processing", 500),
            ("done-1", "routine", "done", 900),
            ("done-2", "routine", "done", 900),
            ("broken", "stat", "failed", 900),
        ]
        insert_scans(connection, rows, now)
        connection.execute(
            sa.insert(Result),
            [
                result_row("done-1", now - timedelta(seconds=60)),
                result_row("done-2", now - timedelta(seconds=600)),
            ],
        )
        # each done scan is an urgent study of its own, decided when it was classified
        connection.execute(
            sa.insert(Study),
            [
                study_row("done-1", now - timedelta(seconds=900), now - timedelta(seconds=60)),
                study_row("done-2", now - timedelta(seconds=900), now - timedelta(seconds=600)),
            ],
        )
        connection.execute(
            sa.insert(UrgentCase),
            [
                {
                    "scan_id": "done-2",
                    "study_id": "done-2",
                    "p2": 0.9,
                    "model_version": "v1",
                    "classified_at": now - timedelta(seconds=600),
                }
            ],
        )
    yield engine
    engine.dispose()


def study_row(study_id: str, received_at: datetime, classified_at: datetime) -> dict:
    return {
        "id": study_id,
        "study_uid": f"triage:{study_id}",
        "priority": "routine",
        "status": "classified",
        "received_at": received_at,
        "last_instance_at": received_at,
        "closed_at": received_at,
        "classified_at": classified_at,
        "p2": 0.9,
        "urgent": True,
        "predicted": 2,
        "top_scan_id": study_id,
        "model_version": "v1",
        "decisions": 1,
    }


def result_row(scan_id: str, classified_at: datetime) -> dict:
    return {
        "scan_id": scan_id,
        "predicted": 2,
        "p0": 0.05,
        "p1": 0.05,
        "p2": 0.9,
        "urgent": True,
        "model_version": "v1",
        "classified_at": classified_at,
    }


def test_snapshot_reports_backlog_ages_and_open_cases(
    ledger: sa.Engine, broker: redis.Redis
) -> None:
    broker.rpush("scans", "job-1", "job-2")
    broker.rpush("urgent", "escalation")
    snapshot = take_snapshot(get_settings())
    queues = {queue.name: queue for queue in snapshot.queues}
    assert [queue.name for queue in snapshot.queues] == ["stat", "scans", "urgent"]
    assert (queues["scans"].broker_depth, queues["scans"].waiting) == (2, 2)
    assert 120 <= queues["scans"].oldest_waiting_seconds < 180
    assert (queues["stat"].broker_depth, queues["stat"].waiting) == (0, 1)
    assert 30 <= queues["stat"].oldest_waiting_seconds < 90
    # done-1 is urgent but not on the worklist yet: its escalation is still waiting
    assert (queues["urgent"].broker_depth, queues["urgent"].waiting) == (1, 1)
    assert 60 <= queues["urgent"].oldest_waiting_seconds < 120
    assert (snapshot.processing, snapshot.failed, snapshot.open_urgent_cases) == (1, 1, 1)


def test_stats_json_on_an_empty_ledger_has_no_ages(ledger: sa.Engine, broker: redis.Redis) -> None:
    from triage.cli import app

    with ledger.begin() as connection:
        for table in (UrgentCase, Result, Scan, Study):
            connection.execute(sa.delete(table))
    result = CliRunner().invoke(app, ["stats", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [queue["oldest_waiting_seconds"] for queue in data["queues"]] == [None, None, None]
    assert data["open_urgent_cases"] == 0


def test_stats_without_tables_says_to_migrate(
    broker: redis.Redis, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triage.cli import app

    kwargs = broker.connection_pool.connection_kwargs
    monkeypatch.setenv(
        "TRIAGE_REDIS_URL", f"redis://{kwargs['host']}:{kwargs['port']}/{MONITOR_DB}"
    )
    monkeypatch.setenv("TRIAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["stats"])
    assert result.exit_code == 1
    assert "triage db upgrade" in result.output
