"""worker.retention: the beat's bounded runs resume the walk through the broker's record."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.broker.server import redis_client
from gateway.operations.retention_report import read_state
from ledger.database import engine_for, upgrade_schema
from schemas.queues import PURGE_TASK, URGENT_QUEUE, route_task
from schemas.settings import get_settings
from testkit.services import redis_url_with_database
from tests.ledger.retention_cases import make_cases, scans_of, snapshot
from worker import retention as task

RUNS_DB = 15


def test_the_retention_task_goes_to_the_urgent_queue_on_the_beat() -> None:
    from worker.app import app

    assert route_task(PURGE_TASK, [], {}, {}) == {"queue": URGENT_QUEUE}
    scheduled = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert scheduled[PURGE_TASK] == get_settings().purge_every_seconds


def test_bounded_runs_resume_where_the_last_one_stopped(
    database_url: str, redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_url = redis_url_with_database(redis_server, RUNS_DB)
    client = redis_client(redis_url)
    client.flushdb()
    monkeypatch.setenv("TRIAGE_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIAGE_REDIS_URL", redis_url)
    get_settings.cache_clear()
    engine = engine_for(database_url)
    upgrade_schema(engine)
    cases = make_cases(engine, plain=2, slices=300)  # 2,700 pixel rows: three windows
    kept = scans_of(engine, [cases.open_case, cases.unlisted, cases.unsent, cases.undecided])
    later = cases.between + timedelta(days=30)  # the young study not yet expired
    monkeypatch.setattr(task, "utcnow", lambda: later)  # the clock the task reads
    first = task.run_purge(get_settings(), max_batches=2)
    assert not first.finished and read_state(client).pixels_held is None  # walk not done
    second = task.run_purge(get_settings(), max_batches=2)
    assert second.finished and second.walked_from == first.resume_after
    state = read_state(client)
    assert set(snapshot(engine)["pixels"]) == kept | scans_of(engine, [cases.young])
    assert state.pixels_held == len(kept) + 300 and state.resume_after == ""
    assert state.purged["pixels"] == first.pixels + second.pixels == 900
    assert task.run_purge(get_settings(), max_batches=2).pixels == 0  # a new walk: nothing left
    client.flushdb()
