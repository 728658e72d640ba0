"""Worker processes for tests and benchmarks: started and ready, frozen, measured.

`worker.processes` is the product's supervisor (the demo and operators start workers through
it); what only tests and benchmarks need lives here: a worker started and waited for in one
call, SIGSTOP fault injection (`frozen`), a worker's process tree and its peak memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from worker.processes import WorkerExited, WorkerProcess, celery_worker, stop_workers, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0
STOP_WITHIN_S = 5.0


def start_worker(
    app: str,
    queues: str,
    name: str,
    env: dict[str, str],
    log_dir: Path,
    broker_url: str,
    concurrency: int = 1,
) -> WorkerProcess:
    """One worker (`concurrency` pool processes, warnings only), started and answering pings;
    stopped again if it never answers. Each pool process gets cores / concurrency TensorFlow
    threads (worker/app.py)."""
    worker = celery_worker(
        name, queues, env, log_dir, app=app, concurrency=concurrency, loglevel="WARNING",
        cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        wait_ready([worker], broker_url, READY_TIMEOUT_S)
    except BaseException:
        stop_workers([worker])
        raise
    return worker


@contextlib.contextmanager
def frozen(worker: WorkerProcess) -> Iterator[None]:
    """The worker and its pool children stopped (SIGSTOP to the group) inside the block, then
    continued: a fault injected meanwhile lands while the worker holds its work."""
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + STOP_WITHIN_S  # delivered when the process next runs
        group = process_tree(worker.process.pid)
        while not all(process_state(pid) in ("T", "t", "") for pid in group):
            if time.monotonic() > deadline:
                raise WorkerExited(f"worker {worker.name} did not stop within {STOP_WITHIN_S} s")
            time.sleep(0.001)
        yield
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)


def pool_children(worker: WorkerProcess) -> list[int]:
    """Pids of every process below the worker (its pool children)."""
    return process_tree(worker.process.pid)[1:]


def peak_rss_mib(worker: WorkerProcess) -> float:
    """The largest VmHWM (peak resident set) among the worker and its children, MiB."""
    return max(_vm_hwm_kib(pid) for pid in process_tree(worker.process.pid)) / 1024


def tree_peak_rss_mib(worker: WorkerProcess) -> float:
    """VmHWM summed over the worker and its children, in MiB (an upper bound)."""
    return sum(_vm_hwm_kib(pid) for pid in process_tree(worker.process.pid)) / 1024


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
