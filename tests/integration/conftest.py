"""Real worker processes for integration tests: `celery -A worker worker` as subprocesses.

Each test gets its own Redis database number (flushed), database, data dir and the brightness
model; the workers and the CLI see them through TRIAGE_ environment variables only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from schemas.settings import get_settings
from tests.services import redis_url_with_database, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
_redis_databases = itertools.cycle(range(1, 16))


@dataclass
class Pipeline:
    """The environment one test's CLI calls and workers share, and the workers it started."""

    env: dict[str, str]
    directory: Path
    redis_url: str
    workers: list[subprocess.Popen] = field(default_factory=list)

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
    ) -> subprocess.Popen:
        """Start `celery -A worker worker -Q queues [extra_args]` and wait until it consumes."""
        log_path = self.directory / f"worker-{name}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", queues,
            "-n", f"{name}@%h", "--pool", pool, "--concurrency", "1", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat", *extra_args,
        ]  # fmt: skip
        with log_path.open("w") as log:
            process = subprocess.Popen(
                command,
                env={**self.env, **env},
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: prefork children stop with it
            )
        self.workers.append(process)

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"worker {name} exited:\n{log_path.read_text()[-3000:]}")
            return " ready." in log_path.read_text()

        wait_until(ready, what=f"worker {name}", timeout=90, interval=0.2)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            _stop(process)
        self.workers.clear()

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def queue_length(self, queue: str) -> int:
        return int(self.broker().llen(queue))

    def worker_logs(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.directory.glob("worker-*.log")))


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the worker's process group, then SIGKILL what is left."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(timeout=10)


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
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.stop_workers()


def wait_for(check, what: str, timeout: float = 120.0) -> None:  # noqa: ANN001
    wait_until(check, what=what, timeout=timeout, interval=0.25)
