"""Celery worker subprocesses for the benchmark: started, waited for, measured and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.services import wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0


class Worker:
    """`celery -A APP worker -Q QUEUES --concurrency 1` in its own process group."""

    def __init__(self, app: str, queues: str, name: str, env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"worker-{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues,
            "-n", f"{name}@%h", "--concurrency", "1", "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, broker_url: str) -> None:
        """Until the worker answers a ping on `broker_url`."""
        from celery import Celery

        app = Celery("bench-control", broker=broker_url)

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker {self.name} exited:\n{self.log_path.read_text()[-3000:]}"
                )
            node = f"{self.name}@{os.uname().nodename}"
            return bool(app.control.ping(destination=[node], timeout=1.0))

        wait_until(answers, what=f"worker {self.name}", timeout=READY_TIMEOUT_S, interval=0.2)

    def peak_rss_mib(self) -> float:
        """The largest VmHWM (peak resident set) among the worker and its pool children, MiB."""
        return max(_vm_hwm_kib(pid) for pid in self.tree()) / 1024

    def tree_peak_rss_mib(self) -> float:
        """VmHWM summed over the worker and its pool children, in MiB (an upper bound)."""
        return sum(_vm_hwm_kib(pid) for pid in self.tree()) / 1024

    def tree(self) -> list[int]:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        pids, frontier = [self.process.pid], [self.process.pid]
        while frontier:
            current = frontier.pop()
            found = [pid for pid, parent in parents.items() if parent == current]
            pids += found
            frontier += found
        return pids

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL what is left after a grace period."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=10)


def _vm_hwm_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def wait_for(check, what: str, timeout: float) -> None:  # noqa: ANN001
    """Poll `check` every 20 ms until truthy."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)
