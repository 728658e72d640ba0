"""The benchmark's Celery workers: `worker.processes` with the benchmark's settings."""

from __future__ import annotations

import os
from pathlib import Path

from bench.services import wait_until
from worker.processes import WorkerProcess, celery_worker, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0
# the routine worker as production runs it: Celery's default of one pool process per core
ROUTINE_CONCURRENCY = len(os.sched_getaffinity(0))


def start_worker(
    app: str,
    queues: str,
    name: str,
    env: dict[str, str],
    log_dir: Path,
    broker_url: str,
    concurrency: int = 1,
) -> WorkerProcess:
    """One worker (`concurrency` pool processes, warnings only), started and answering pings.
    Each pool process gets cores / concurrency TensorFlow threads (worker/app.py)."""
    worker = celery_worker(
        name, queues, env, log_dir, app=app, concurrency=concurrency, loglevel="WARNING",
        cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        wait_ready([worker], broker_url, READY_TIMEOUT_S)
    except BaseException:
        worker.stop()
        raise
    return worker


def wait_for(check, what: str, timeout: float) -> None:  # noqa: ANN001
    """Poll `check` every 20 ms until truthy."""
    wait_until(check, what=what, timeout=timeout, interval=0.02)
