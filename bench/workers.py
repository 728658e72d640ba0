"""The benchmark's Celery workers: `worker.processes` with the benchmark's settings."""

from __future__ import annotations

from pathlib import Path

from bench.services import wait_until
from worker.processes import WorkerProcess, celery_worker, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0


def start_worker(
    app: str, queues: str, name: str, env: dict[str, str], log_dir: Path, broker_url: str
) -> WorkerProcess:
    """One worker process (`--concurrency 1`, warnings only), started and answering pings."""
    worker = celery_worker(name, queues, env, log_dir, app=app, loglevel="WARNING", cwd=REPO_ROOT)
    try:
        wait_ready([worker], broker_url, READY_TIMEOUT_S)
    except BaseException:
        worker.stop()
        raise
    return worker


def wait_for(check, what: str, timeout: float) -> None:  # noqa: ANN001
    """Poll `check` every 20 ms until truthy."""
    wait_until(check, what=what, timeout=timeout, interval=0.02)
