"""Celery worker processes as children: started, waited for, measured and always stopped.

The one supervisor of `celery -A APP worker` subprocesses, used by `triage demo`, the
benchmarks and the integration tests. Each worker runs in its own process group, so Ctrl-C in
a terminal reaches only the parent, and stopping it is: SIGTERM to the worker (Celery's warm
shutdown finishes the running job), then SIGKILL to the whole group (pool children included)
after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
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

    @property
    def pid(self) -> int:
        return self.process.pid

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

    def pool_children(self) -> list[int]:
        """Pids of every process below the worker (its pool children)."""
        return process_tree(self.process.pid)[1:]

    def peak_rss_mib(self) -> float:
        """The largest VmHWM (peak resident set) among the worker and its children, MiB."""
        return max(_vm_hwm_kib(pid) for pid in process_tree(self.process.pid)) / 1024

    def tree_peak_rss_mib(self) -> float:
        """VmHWM summed over the worker and its children, in MiB (an upper bound)."""
        return sum(_vm_hwm_kib(pid) for pid in process_tree(self.process.pid)) / 1024

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

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        stop_workers([self], grace)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The worker and its pool children stopped (SIGSTOP to the group) inside the block,
        then continued: a fault injected meanwhile lands while the worker holds its work."""
        os.killpg(self.process.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 5  # a signal is delivered when the process next runs
            group = process_tree(self.process.pid)
            while not all(process_state(pid) in ("T", "t", "") for pid in group):
                if time.monotonic() > deadline:
                    raise WorkerExited(f"worker {self.name} did not stop within 5 s")
                time.sleep(0.001)
            yield
        finally:
            os.killpg(self.process.pid, signal.SIGCONT)


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


def process_tree(root: int) -> list[int]:
    """`root` and every process below it, root first."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = int(proc_stat(int(entry.name))[1])
    pids, frontier = [root], [root]
    while frontier:
        current = frontier.pop()
        found = [pid for pid, parent in parents.items() if parent == current]
        pids += found
        frontier += found
    return pids


def proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name: state, ppid, ... (field 3 onwards; the
    name, in parentheses, may hold spaces). Raises OSError when the process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_state(pid: int) -> str:
    """The one-letter state (R running, S sleeping, T stopped ...); "" if the process is gone."""
    try:
        return proc_stat(pid)[0]
    except OSError:
        return ""


def _vm_hwm_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0
