"""testkit.workers: a worker's process tree and SIGSTOP freezing, on stand-in shell processes."""

from __future__ import annotations

import time
from pathlib import Path

from testkit.workers import frozen, pool_children, process_state
from worker.processes import WorkerProcess


def spawn(tmp_path: Path, name: str, script: str) -> WorkerProcess:
    return WorkerProcess(name, ["sh", "-c", script], None, tmp_path / "logs")


def test_the_process_tree_holds_the_children(tmp_path: Path) -> None:
    worker = spawn(tmp_path, "pool", "sleep 30 & sleep 30 & wait")
    try:
        deadline = time.monotonic() + 5
        while len(pool_children(worker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool_children(worker)) == 2
    finally:
        worker.kill()
    assert worker.process.returncode == -9


def test_frozen_stops_the_worker_and_its_children_then_continues_them(tmp_path: Path) -> None:
    worker = spawn(tmp_path, "pool", "sleep 30 & wait")
    try:
        deadline = time.monotonic() + 5
        while not pool_children(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = pool_children(worker)
        with frozen(worker):
            assert process_state(worker.process.pid) == "T" and process_state(child) == "T"
        time.sleep(0.1)
        assert process_state(worker.process.pid) != "T" and process_state(child) != "T"
        worker.check_alive()
    finally:
        worker.kill()
