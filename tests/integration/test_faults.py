"""Fault injection with real Redis, PostgreSQL and Celery worker processes.

Each test kills or restarts one part in the middle of a run and ends with every scan having
exactly one result (none lost, none duplicated), every urgent one on the worklist exactly once,
and no scan `done` without its result. The reconciler (`triage reconcile`, or the beat in the
urgent worker) re-sends what the ledger says is unfinished.
RELIABILITY.md describes each fault and what these tests check.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from gateway.intake.client import submit_images
from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Result, Scan, UrgentCase
from testkit.peers import serving
from testkit.services import (
    PostgresServer,
    RedisServer,
    create_database,
    postgres_bin_dir,
    wait_until,
)
from testkit.workers import frozen, pool_children
from tests.fixtures_model import brightness_scans
from tests.integration.conftest import Pipeline, wait_for
from worker.processes import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FAST_RECONCILE = {
    "TRIAGE_STUCK_AFTER_SECONDS": "3",
    "TRIAGE_RECONCILE_EVERY_SECONDS": "1",
}
BEAT = ("-B", "-s")  # + a schedule file


@pytest.fixture
def start(pipeline_factory):  # noqa: ANN001, ANN201
    """start(redis_url, database_url, batch_size) -> a Pipeline reconciling every second."""

    def make(redis_url: str, database_url: str, batch_size: int) -> Pipeline:
        return pipeline_factory(database_url, batch_size, redis_url=redis_url, env=FAST_RECONCILE)

    return make


def urgent_worker_with_beat(pipeline: Pipeline, name: str, **env: str) -> WorkerProcess:
    schedule = str(pipeline.directory / f"beat-{name}")
    return pipeline.start_worker("urgent", name, extra_args=(*BEAT, schedule), **env)


def enqueue(count: int, seed: int, urgent_share: float = 0.3) -> tuple[list[str], set[str]]:
    """Submit `count` scans; returns their ids and the ids that must come out urgent."""
    rng = np.random.default_rng(seed)
    urgent = rng.random(count) < urgent_share
    means = np.where(urgent, rng.integers(170, 240, count), rng.integers(20, 100, count))
    submission = submit_images(brightness_scans(means.tolist(), seed=seed))
    ids = [scan_id for scan_id, _ in submission.queued]
    assert len(ids) == count and not submission.rejected
    return ids, {scan_id for scan_id, flag in zip(ids, urgent, strict=True) if flag}


def kill(worker: WorkerProcess) -> None:
    """SIGKILL the worker and its children: no shutdown, no acks, no cleanup."""
    worker.kill()


def counts(engine) -> dict[str, int]:  # noqa: ANN001 - sqlalchemy Engine
    with engine.connect() as connection:
        done = connection.scalar(sa.select(sa.func.count()).where(Scan.status == "done"))
        cases = connection.scalar(sa.select(sa.func.count()).select_from(UrgentCase))
        processing = connection.scalar(
            sa.select(sa.func.count()).where(Scan.status == "processing")
        )
    return {"done": done, "cases": cases, "processing": processing}


def settled(engine, total: int, urgent: int) -> bool:  # noqa: ANN001
    now = counts(engine)
    return now["done"] == total and now["cases"] == urgent


def check_exactly_once(engine, ids: list[str], urgent: set[str]) -> None:  # noqa: ANN001
    """Assert one result per scan and one worklist row per urgent scan."""
    with engine.connect() as connection:
        result_ids = connection.scalars(sa.select(Result.scan_id)).all()
        case_ids = connection.scalars(sa.select(UrgentCase.scan_id)).all()
        statuses = dict(
            connection.execute(sa.select(Scan.status, sa.func.count()).group_by(Scan.status)).all()
        )
        done_without_result = connection.scalar(
            sa.select(sa.func.count())
            .select_from(Scan)
            .outerjoin(Result, Result.scan_id == Scan.id)
            .where(Scan.status == "done", Result.scan_id.is_(None))
        )
        urgent_results = set(connection.scalars(sa.select(Result.scan_id).where(Result.urgent)))
    lost = len(set(ids) - set(result_ids))
    duplicated = (len(result_ids) - len(set(result_ids))) + (len(case_ids) - len(set(case_ids)))
    assert lost == 0 and duplicated == 0, f"lost {lost}, duplicated {duplicated}"
    assert set(result_ids) == set(ids) and statuses == {"done": len(ids)}
    assert done_without_result == 0
    assert urgent_results == urgent, "the brightness model decides urgency deterministically"
    assert sorted(case_ids) == sorted(urgent)


def reconcile_until(pipeline: Pipeline, engine, total: int, urgent: int, timeout: float) -> int:  # noqa: ANN001
    """Run `triage reconcile` (the CLI) until the ledger is settled; returns how many runs."""
    runs = 0
    deadline = time.monotonic() + timeout
    while not settled(engine, total, urgent):
        assert time.monotonic() < deadline, f"not settled after {timeout:.0f} s: {counts(engine)}"
        finished = pipeline.triage("reconcile")
        assert finished.returncode == 0, finished.stderr
        runs += 1
        time.sleep(1.0)
    return runs


def test_a_prefork_pool_child_killed_mid_job_loses_and_repeats_nothing(
    start, redis_server: str, postgres_admin_url: str
) -> None:
    """SIGKILL the pool child (not the worker): Celery replaces it and requeues the job."""
    pipeline = start(redis_server, create_database(postgres_admin_url), batch_size=25)
    ids, urgent = enqueue(600, seed=13)
    engine = engine_for(get_settings().resolved_database_url)
    pipeline.start_worker("urgent", "urgent")
    routine = pipeline.start_worker("stat,scans", "routine", pool="prefork")
    (child,) = pool_children(routine)

    def mid_job() -> bool:
        now = counts(engine)
        return now["done"] >= 100 and now["processing"] > 0

    wait_until(mid_job, what="a job in flight after 100 scans", timeout=120, interval=0.005)
    os.kill(child, signal.SIGKILL)
    at_kill = counts(engine)
    assert at_kill["done"] < 600, "the backlog drained before the kill: nothing was tested"
    # the worker itself lives on with a new child; the lost job comes back as single scans
    wait_for(lambda: settled(engine, 600, len(urgent)), "the backlog to finish", timeout=150)
    routine.check_alive()
    assert pool_children(routine) and pool_children(routine) != [child]
    check_exactly_once(engine, ids, urgent)
    assert "signal 9 (SIGKILL)" in pipeline.worker_logs()  # Celery saw its child die


def test_routine_worker_killed_in_a_backlog_of_2000_scans(
    start, redis_server: str, postgres_admin_url: str
) -> None:
    pipeline = start(redis_server, create_database(postgres_admin_url), batch_size=50)
    ids, urgent = enqueue(2000, seed=11)
    engine = engine_for(get_settings().resolved_database_url)
    pipeline.start_worker("urgent", "urgent")
    routine = pipeline.start_worker("stat,scans", "routine")

    # kill with a job in flight (its scans claimed, `processing`), 300 scans into the backlog
    def mid_job() -> bool:
        now = counts(engine)
        return now["done"] >= 300 and now["processing"] > 0

    wait_until(mid_job, what="a job in flight after 300 scans", timeout=120, interval=0.005)
    kill(routine)
    at_kill = counts(engine)
    assert at_kill["done"] < 2000, "the backlog drained before the kill: nothing was tested"

    pipeline.start_worker("stat,scans", "routine-2")
    runs = reconcile_until(pipeline, engine, 2000, len(urgent), timeout=150)

    check_exactly_once(engine, ids, urgent)
    assert runs >= 1


class SlowWebhook(BaseHTTPRequestHandler):
    """A pager that takes 40 ms per call (so escalations stay pending long enough to kill)."""

    calls: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.04)
        SlowWebhook.calls.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


def paged_ids() -> set[str]:
    return {json.loads(body)["scan_id"] for body in SlowWebhook.calls}


@pytest.fixture
def webhook() -> Iterator[str]:
    SlowWebhook.calls = []
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), SlowWebhook)) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}/page"


def test_urgent_worker_killed_while_escalations_are_pending(
    start, redis_server: str, postgres_admin_url: str, webhook: str
) -> None:
    # one scan a job: one escalation message per urgent scan, so the kill finds many pending
    pipeline = start(redis_server, create_database(postgres_admin_url), batch_size=1)
    ids, urgent = enqueue(500, seed=12, urgent_share=0.6)
    engine = engine_for(get_settings().resolved_database_url)
    pipeline.start_worker("stat,scans", "routine", TRIAGE_NOTIFY_URL=webhook)
    wait_for(lambda: counts(engine)["done"] == 500, "all 500 classified")
    wait_for(lambda: pipeline.queue_length("urgent") > 0, "escalations waiting in `urgent`")
    assert counts(engine)["cases"] == 0

    first = pipeline.start_worker("urgent", "urgent", TRIAGE_NOTIFY_URL=webhook)
    wait_for(lambda: counts(engine)["cases"] >= 40, "40 cases on the worklist before the kill")
    kill(first)
    pending = len(urgent) - counts(engine)["cases"]
    assert pending > 0, "every escalation was done before the kill: nothing was tested"

    urgent_worker_with_beat(pipeline, "urgent-2", TRIAGE_NOTIFY_URL=webhook)
    wait_for(lambda: settled(engine, 500, len(urgent)), "the worklist to be complete", timeout=90)
    # the webhook is the outbox's: the deliveries worker sends one POST per urgent study
    pipeline.start_worker("deliveries", "deliveries", TRIAGE_NOTIFY_URL=webhook)

    check_exactly_once(engine, ids, urgent)
    # every case is paged, also those the killed worker had put on the worklist but not paged:
    # the reconciler pages again whatever has no `notified_at`; and every urgent study's
    # webhook went out from the outbox, whatever happened to the urgent worker
    wait_for(lambda: paged_ids() >= urgent, "every urgent case's webhook", timeout=120)
    with engine.connect() as connection:
        unpaged = connection.scalar(
            sa.select(sa.func.count())
            .select_from(UrgentCase)
            .where(UrgentCase.notified_at.is_(None))
        )
    assert unpaged == 0


def test_redis_restarted_with_its_data_lost_mid_run(
    start, tmp_path: Path, postgres_admin_url: str
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        pipeline = start(redis.url, create_database(postgres_admin_url), batch_size=50)
        ids, urgent = enqueue(1500, seed=13)
        engine = engine_for(get_settings().resolved_database_url)
        urgent_worker_with_beat(pipeline, "urgent")
        routine = pipeline.start_worker("stat,scans", "routine")
        wait_for(lambda: counts(engine)["done"] >= 200, "200 scans done before the wipe")

        # the routine worker is held still while Redis restarts, so that a fast machine cannot
        # finish the backlog first; it wakes to a broker that has lost its messages
        with frozen(routine):
            redis.stop(wipe=True)
            redis.start()  # same port, empty: every queued job and escalation is gone
            assert redis.client().dbsize() == 0
            at_wipe = counts(engine)["done"]
        assert at_wipe < 1500, "the run ended before the wipe: nothing was tested"

        wait_for(lambda: settled(engine, 1500, len(urgent)), "the reconciler to recover", 120)
        check_exactly_once(engine, ids, urgent)
    finally:
        redis.stop()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL binaries not installed")
    parent = Path(tempfile.mkdtemp(prefix="triage-pg-fault-"))
    parent.chmod(0o755)
    server = PostgresServer(parent / "cluster").start()
    yield server
    server.stop(mode="immediate")
    shutil.rmtree(parent, ignore_errors=True)


def test_postgres_restarted_mid_run(start, redis_server: str, own_postgres: PostgresServer) -> None:
    pipeline = start(redis_server, create_database(own_postgres.url), batch_size=50)
    ids, urgent = enqueue(1500, seed=14)
    engine = engine_for(get_settings().resolved_database_url)
    urgent_worker_with_beat(pipeline, "urgent")
    routine = pipeline.start_worker("stat,scans", "routine")
    wait_for(lambda: counts(engine)["done"] >= 200, "200 scans done before the restart")

    with frozen(routine):  # so that a fast machine cannot finish the backlog first
        at_crash = counts(engine)["done"]
        own_postgres.stop(mode="immediate")  # a crash: connections cut, no checkpoint
    assert at_crash < 1500, "the run ended before the crash: nothing was tested"
    time.sleep(3)
    own_postgres.start()
    # back, and every result committed before the crash is still there
    wait_for(lambda: counts(engine)["done"] >= 200, "PostgreSQL back with the results it had")

    wait_for(lambda: settled(engine, 1500, len(urgent)), "the workers to retry and finish", 120)
    check_exactly_once(engine, ids, urgent)
    assert "retrying" in pipeline.worker_logs()  # the outage was felt, and retried
