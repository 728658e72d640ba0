"""Real worker processes for integration tests: `celery -A worker worker` as subprocesses.

Each test gets its own Redis database number (flushed), database, data dir and the brightness
model; the workers and the CLI see them through TRIAGE_ environment variables only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from ledger.database import engine_for, upgrade_schema
from schemas.settings import get_settings
from testkit.services import free_port, redis_url_with_database, wait_until
from worker.processes import QUIET_FLAGS, WorkerProcess, celery_worker, stop_workers, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
_redis_databases = itertools.cycle(range(1, 16))


@dataclass
class Pipeline:
    """The environment one test's CLI calls and workers share, and the workers it started."""

    env: dict[str, str]
    directory: Path
    redis_url: str
    workers: list[WorkerProcess] = field(default_factory=list)

    def triage(self, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
        """Run the `triage` command line in a fresh process."""
        return subprocess.run(
            [sys.executable, "-m", "triage", *args],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start_worker(
        self,
        queues: str,
        name: str,
        pool: str = "solo",
        extra_args: tuple[str, ...] = (),
        **env: str,
    ) -> WorkerProcess:
        """Start `celery -A worker worker -Q queues [extra_args]` and wait until it answers."""
        worker = celery_worker(
            name, queues, {**self.env, **env}, self.directory, pool=pool,
            extra_args=(*QUIET_FLAGS, *extra_args), cwd=REPO_ROOT,
        )  # fmt: skip
        self.workers.append(worker)
        wait_ready([worker], self.redis_url, timeout=90)
        return worker

    def stop_workers(self) -> None:
        stop_workers(self.workers, grace=15)
        self.workers.clear()

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def queue_length(self, queue: str) -> int:
        return int(self.broker().llen(queue))

    def worker_logs(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.directory.glob("worker-*.log")))


def make_pipeline(
    base_dir: Path, redis_server: str, database_url: str, model_dir: Path, batch_size: int
) -> Pipeline:
    redis_url = redis_url_with_database(redis_server, next(_redis_databases))
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TRIAGE_") or key.startswith("TRIAGE_TEST_")
    }
    env.update(
        TRIAGE_DATA_DIR=str(base_dir / "data"),
        TRIAGE_DATABASE_URL=database_url,
        TRIAGE_REDIS_URL=redis_url,
        TRIAGE_MODEL_DIR=str(model_dir),
        TRIAGE_BATCH_SIZE=str(batch_size),
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    return Pipeline(env=env, directory=base_dir, redis_url=redis_url)


@pytest.fixture
def pipeline_factory(
    tmp_path: Path,
    redis_server: str,
    published_model_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator:
    """make(database_url, batch_size, redis_url, env) -> Pipeline; this process's settings
    match it too. `redis_url` defaults to the session's server; `env` adds TRIAGE_ settings."""
    made: list[Pipeline] = []

    def make(
        database_url: str,
        batch_size: int = 16,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Pipeline:
        pipeline = make_pipeline(
            tmp_path, redis_url or redis_server, database_url, published_model_root, batch_size
        )
        pipeline.env.update(env or {})
        for key, value in pipeline.env.items():
            if key.startswith("TRIAGE_") and not key.startswith("TRIAGE_TEST_"):
                monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        upgrade_schema(engine_for(database_url))  # what `triage db upgrade` does before a start
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.stop_workers()


def wait_for(check, what: str, timeout: float = 120.0) -> None:  # noqa: ANN001
    wait_until(check, what=what, timeout=timeout, interval=0.25)


@contextlib.contextmanager
def web_process(pipeline: Pipeline, log_path: Path) -> Iterator[str]:
    """A real `triage web` process on this pipeline's ledger, on a free port, logging to
    `log_path`; yields its URL once /healthz answers, stops it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "triage", "web", "--port", str(port)],
            env=pipeline.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(
                lambda: urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200,
                "triage web",
                timeout=60,
            )
            yield url
        finally:
            server.terminate()
            server.wait(timeout=20)
