"""The demo's Celery workers as child processes: started, watched, and always stopped.

Each worker runs in its own process group (so Ctrl-C in the terminal reaches only the demo,
which then stops them in order): SIGTERM to the worker (Celery's warm shutdown finishes the
running job), then SIGKILL to the whole group after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from schemas.settings import Settings

GRACE_SECONDS = 20.0
LOG_TAIL_LINES = 15


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and where to look."""


class WorkerProcesses:
    """Named `celery -A worker worker` children sharing the demo's settings."""

    def __init__(self, settings: Settings, log_dir: Path, model_root: Path) -> None:
        self.log_dir = log_dir
        self.environment = dict(
            os.environ,
            TRIAGE_DATA_DIR=str(settings.resolved_data_dir),
            TRIAGE_MODEL_DIR=str(model_root),
        )
        self.children: dict[str, subprocess.Popen] = {}

    def node(self, name: str) -> str:
        return f"demo-{name}@{socket.gethostname()}"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, queues: str) -> None:
        """Start one worker serving `queues` (comma-separated, in priority order)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("w") as log:
            self.children[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker",
                    "worker",
                    "-Q",
                    queues,
                    "-n",
                    f"demo-{name}@%h",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "INFO",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        """Raise DemoError naming the first worker that has exited, with its log's last lines."""
        for name, child in self.children.items():
            if child.poll() is not None:
                raise DemoError(
                    f"the {name} worker exited with status {child.returncode}; "
                    f"last lines of {self.log_path(name)}:\n{self.log_tail(name)}"
                )

    def wait_ready(self, timeout: float) -> None:
        """Block until every worker answers a ping (its pool, and so its model, is up)."""
        from worker.app import app

        waiting = {self.node(name) for name in self.children}
        deadline = time.monotonic() + timeout
        while waiting:
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(
                    f"workers {', '.join(sorted(waiting))} did not answer within {timeout:.0f} s; "
                    f"see {self.log_dir}"
                )
            for reply in app.control.ping(destination=sorted(waiting), timeout=1.0):
                waiting -= set(reply)

    def stop(self, console: Console | None = None) -> None:
        """SIGTERM every worker, wait up to the grace period, then SIGKILL what is left."""
        running = {name: child for name, child in self.children.items() if child.poll() is None}
        for child in running.values():
            _signal_group(child, signal.SIGTERM, whole_group=False)
        if running and console is not None:
            console.print(f"stopping workers: {', '.join(running)}")
        deadline = time.monotonic() + GRACE_SECONDS
        for child in running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
        for child in self.children.values():
            _signal_group(child, signal.SIGKILL, whole_group=True)
            child.wait()
        self.children.clear()

    def log_tail(self, name: str) -> str:
        try:
            lines = self.log_path(name).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-LOG_TAIL_LINES:])


def _signal_group(child: subprocess.Popen, signum: int, whole_group: bool) -> None:
    """Signal the worker, or its whole process group (pool children included)."""
    try:
        if whole_group:
            os.killpg(child.pid, signum)
        else:
            child.send_signal(signum)
    except ProcessLookupError:
        pass
