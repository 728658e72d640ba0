"""Stage 4: urgent escalation and stat time-to-result while a routine backlog drains.

A routine worker (`-Q stat,scans`) and an urgent worker (`-Q urgent`) run side by side. The
whole backlog is enqueued first; then single stat scans are enqueued at intervals behind it.
- escalation: `urgent_cases.escalated_at - classified_at` for every class-2 result (both
  stamped by the workers: the results transaction, then the worklist insert);
- stat time-to-result: the stat result's `classified_at` minus the moment its enqueue call
  began (so validation, the ledger insert and publishing are included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from bench.environment import BenchEnvironment
from bench.pipeline import (
    POLL_S,
    ROUTINE_CONCURRENCY,
    count,
    enqueue,
    prepare,
    read_engine,
    warm_up,
)
from ledger.studies import undecided_studies
from ledger.worklist import unlisted_urgent
from schemas.tables import Result, UrgentCase, as_utc
from testkit.environment import worker_environment
from testkit.services import wait_until
from testkit.workers import peak_rss_mib, start_worker
from worker.processes import stop_workers

STAT_SCANS = 20
STAT_INTERVAL_S = 0.25


@dataclass(frozen=True)
class LatencyRun:
    escalation_ms: list[float]
    stat_ms: list[float]
    backlog: int
    drain_seconds: float
    routine_peak_rss_mib: float
    urgent_peak_rss_mib: float


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 (linear interpolation); zeros when there is nothing to measure."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    p50, p95, p99 = np.percentile(np.asarray(values, float), [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def run_latency(
    env: BenchEnvironment, backend: str, backlog: int, batch_size: int, log_dir: Path
) -> LatencyRun:
    """Drain `backlog` routine scans with stat scans enqueued behind them; collect the delays."""
    settings = env.settings(env.fresh_database(backend), batch_size=batch_size)
    prepare(settings)
    engine = read_engine(settings)
    worker_env = worker_environment(settings)
    url = settings.redis_url
    routine = start_worker(
        "worker", "stat,scans", f"lat-routine-{backend}", worker_env, log_dir, url,
        ROUTINE_CONCURRENCY,
    )  # fmt: skip
    try:
        urgent = start_worker("worker", "urgent", f"lat-urgent-{backend}", worker_env, log_dir, url)
    except BaseException:
        stop_workers([routine])
        raise
    try:
        warm_up(env.scans, settings, engine, timeout=300, jobs=ROUTINE_CONCURRENCY)
        before = count(engine, Result.__table__)
        started = time.perf_counter()
        backlog_ids = set(enqueue(env.scans[:backlog], settings))
        stat_submitted: dict[str, datetime] = {}
        for image in env.scans[-STAT_SCANS:]:
            if stat_submitted and count(engine, Result.__table__) >= before + backlog:
                break  # the backlog is gone: later stat scans would not be behind it
            moment = datetime.now(UTC)
            (scan_id,) = enqueue(image[None], settings, priority="stat")
            stat_submitted[scan_id] = moment
            time.sleep(STAT_INTERVAL_S)
        total = before + backlog + len(stat_submitted)
        wait_until(
            lambda: count(engine, Result.__table__) >= total,
            "backlog results",
            900,
            interval=POLL_S,
        )
        drained = time.perf_counter() - started
        wait_until(lambda: _unescalated(engine) == 0, "escalations", 120, interval=POLL_S)
        escalation_ms = _escalation_ms(engine, backlog_ids | set(stat_submitted))
        stat_ms = _stat_ms(engine, stat_submitted)
        return LatencyRun(
            escalation_ms, stat_ms, backlog, drained, peak_rss_mib(routine), peak_rss_mib(urgent)
        )
    finally:
        stop_workers([routine, urgent])
        engine.dispose()


def _unescalated(engine: sa.Engine) -> int:
    """Studies still to be decided (a job records results, then decides) or, urgent, still
    to be listed: the escalations not measurable yet."""
    undecided = undecided_studies(sa.func.count())
    with engine.connect() as connection:
        waiting = connection.execute(unlisted_urgent(sa.func.count())).scalar_one()
        return int(waiting) + int(connection.execute(undecided).scalar_one())


def _escalation_ms(engine: sa.Engine, scan_ids: set[str]) -> list[float]:
    cases = UrgentCase.__table__
    query = sa.select(cases.c.scan_id, cases.c.classified_at, cases.c.escalated_at)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        (as_utc(row.escalated_at) - as_utc(row.classified_at)).total_seconds() * 1000
        for row in rows
        if row.scan_id in scan_ids
    ]


def _stat_ms(engine: sa.Engine, submitted: dict[str, datetime]) -> list[float]:
    results = Result.__table__
    query = sa.select(results.c.scan_id, results.c.classified_at).where(
        results.c.scan_id.in_(list(submitted))
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        (as_utc(row.classified_at) - submitted[row.scan_id]).total_seconds() * 1000 for row in rows
    ]
