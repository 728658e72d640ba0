"""Celery worker processes as children: started, waited for and always stopped.

The one supervisor of `celery -A APP worker` subprocesses: `triage demo` starts its workers
(and its `triage web` page) through it, and so does the test kit (testkit/workers.py adds
what only tests and benchmarks need). Each worker runs in its own process group, so Ctrl-C in a terminal reaches only the
parent, and stopping it is: SIGTERM to the worker (Celery's warm shutdown finishes the running
job), then SIGKILL to the whole group (pool children included) after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

GRACE_SECONDS = 20.0
LOG_TAIL_LINES = 15
QUIET_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")


class WorkerExited(RuntimeError):
    """A worker process ended (or never answered); the message names it and shows its log."""


def celery_worker(
    name: str,
    queues: str,
    env: dict[str, str],
    log_dir: Path,
    app: str = "worker",
    pool: str = "prefork",
    concurrency: int = 1,
    loglevel: str = "INFO",
    extra_args: Sequence[str] = QUIET_FLAGS,
    cwd: Path | None = None,
) -> WorkerProcess:
    """Start `celery -A app worker -Q queues -n name@host` as a supervised child."""
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues,
        "-n", f"{name}@%h", "--pool", pool, "--concurrency", str(concurrency),
        "--loglevel", loglevel, *extra_args,
    ]  # fmt: skip
    return WorkerProcess(name, command, env, log_dir, cwd)


class WorkerProcess:
    """A worker command in its own process group, logging to `log_dir/worker-NAME.log`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: dict[str, str] | None,
        log_dir: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"worker-{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                list(command),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def node(self) -> str:
        """The worker's Celery node name (what `celery inspect ping -d` takes)."""
        return f"{self.name}@{socket.gethostname()}"

    def check_alive(self) -> None:
        """Raise WorkerExited if the worker has exited, with its log's last lines."""
        if self.process.poll() is not None:
            raise WorkerExited(
                f"worker {self.name} exited with status {self.process.returncode}; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def terminate(self) -> None:
        """SIGTERM the worker itself: a warm shutdown that finishes the running job."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the worker."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def wait_ready(workers: Sequence[WorkerProcess], broker_url: str, timeout: float) -> None:
    """Block until every worker answers a ping on `broker_url` (its pool, and model, are up)."""
    from celery import Celery

    control = Celery("triage-control", broker=broker_url, set_as_current=False)
    waiting = {worker.node: worker for worker in workers}
    deadline = time.monotonic() + timeout
    try:
        while waiting:
            for worker in waiting.values():
                worker.check_alive()
            if time.monotonic() > deadline:
                names = ", ".join(sorted(waiting))
                raise WorkerExited(f"workers {names} did not answer within {timeout:.0f} s")
            for reply in control.control.ping(destination=sorted(waiting), timeout=1.0):
                for node in reply:
                    waiting.pop(node, None)
    finally:
        control.close()


def stop_workers(workers: Sequence[WorkerProcess], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every worker, wait up to `grace` seconds in all, then SIGKILL what is left."""
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + grace
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for worker in workers:
        worker.kill()
