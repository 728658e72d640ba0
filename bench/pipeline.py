"""Stage 2: end-to-end throughput of the real pipeline with one routine worker process.

The clock runs from the first enqueue call (validation, the ledger insert, publishing the jobs)
to the moment the last result row is visible in the database: the whole pipeline. Scans are
submitted through `gateway.intake.client.submit_images` in chunks, as a hospital system would send
studies, so the worker starts on the first chunk while later ones are still arriving.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from bench.environment import BenchEnvironment
from schemas.settings import Settings
from schemas.tables import Result, Scan, UrgentCase
from testkit.environment import worker_environment
from testkit.services import wait_until
from testkit.workers import peak_rss_mib, start_worker, tree_peak_rss_mib
from worker.processes import stop_workers

ENQUEUE_CHUNK = 1000
WARMUP_SCANS = 64
POLL_S = 0.02
# the routine worker as production runs it: Celery's default of one pool process per core
ROUTINE_CONCURRENCY = len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class PipelineRun:
    scans: int
    seconds: float
    enqueue_seconds: float
    worker_peak_rss_mib: float
    worker_tree_peak_rss_mib: float

    @property
    def scans_per_s(self) -> float:
        return self.scans / self.seconds


def read_engine(settings: Settings) -> sa.Engine:
    """A plain engine for the benchmark's polling (no write lock: SQLite readers under WAL)."""
    return sa.create_engine(settings.resolved_database_url, poolclass=sa.pool.NullPool)


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar())


def enqueue(images: np.ndarray, settings: Settings, priority: str = "routine") -> list[str]:
    """Submit `images` in chunks through the client API; returns the scan ids."""
    from gateway.intake.client import submit_images

    ids: list[str] = []
    for start in range(0, len(images), ENQUEUE_CHUNK):
        submission = submit_images(
            images[start : start + ENQUEUE_CHUNK], priority=priority, settings=settings
        )
        if submission.rejected:
            raise RuntimeError(f"benchmark scans rejected: {submission.rejected[0]}")
        ids += [scan_id for scan_id, _ in submission.queued]
    return ids


def prepare(settings: Settings) -> None:
    from ledger.database import engine_for, upgrade_schema

    upgrade_schema(engine_for(settings.resolved_database_url))


def warm_up(
    images: np.ndarray, settings: Settings, engine: sa.Engine, timeout: float, jobs: int = 1
) -> None:
    """Small jobs through the worker first, one per pool process: model traced, connections
    open."""
    for _ in range(jobs):
        enqueue(images[:WARMUP_SCANS], settings)
    wanted = WARMUP_SCANS * jobs
    wait_until(
        lambda: count(engine, Result.__table__) >= wanted, "warm-up", timeout, interval=POLL_S
    )


def run_pipeline(
    env: BenchEnvironment,
    backend: str,
    scans: int,
    batch_size: int,
    log_dir: Path,
    model_root: Path | None = None,
    concurrency: int = ROUTINE_CONCURRENCY,
) -> PipelineRun:
    """Enqueue `scans` phantoms and time them through one routine worker (`concurrency` pool
    processes) on `backend`, serving the model published under `model_root` (else the run's)."""
    settings = env.settings(env.fresh_database(backend), model_root, batch_size=batch_size)
    prepare(settings)
    engine = read_engine(settings)
    worker = start_worker(
        "worker",
        "stat,scans",
        f"routine-{backend}",
        worker_environment(settings),
        log_dir,
        settings.redis_url,
        concurrency,
    )
    try:
        warm_up(env.scans, settings, engine, timeout=300, jobs=concurrency)
        baseline = count(engine, Result.__table__)
        images = env.scans[:scans]
        started = time.perf_counter()
        enqueue(images, settings)
        enqueued = time.perf_counter() - started
        target = baseline + len(images)
        deadline = started + max(600.0, scans / 5)
        while count(engine, Result.__table__) < target:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"pipeline on {backend}: results missing after the deadline")
            time.sleep(POLL_S)
        seconds = time.perf_counter() - started
        _check_done(engine, target)
        return PipelineRun(
            len(images), seconds, enqueued, peak_rss_mib(worker), tree_peak_rss_mib(worker)
        )
    finally:
        stop_workers([worker])
        engine.dispose()


def _check_done(engine: sa.Engine, expected: int) -> None:
    scans = Scan.__table__
    with engine.connect() as connection:
        done = connection.execute(
            sa.select(sa.func.count()).select_from(scans).where(scans.c.status == "done")
        ).scalar()
    if done != expected:
        raise RuntimeError(f"expected {expected} scans done, found {done}")


def urgent_rows(engine: sa.Engine) -> int:
    return count(engine, UrgentCase.__table__)
