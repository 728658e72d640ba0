"""worker.processes: the one supervisor of worker children, on stand-in shell processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from worker.processes import WorkerExited, WorkerProcess, stop_workers


def spawn(tmp_path: Path, name: str, script: str) -> WorkerProcess:
    worker = WorkerProcess(name, ["sh", "-c", script], None, tmp_path / "logs")
    return worker


def test_a_dead_worker_is_named_with_its_log(tmp_path: Path) -> None:
    worker = spawn(tmp_path, "routine", "echo 'model not found: run triage train'; exit 3")
    worker.process.wait()
    with pytest.raises(WorkerExited, match=r"worker routine exited with status 3") as error:
        worker.check_alive()
    assert "model not found" in str(error.value)


def test_a_running_worker_passes_the_check(tmp_path: Path) -> None:
    worker = spawn(tmp_path, "urgent", "sleep 30")
    try:
        worker.check_alive()  # raises if it were gone
        assert worker.process.poll() is None
    finally:
        worker.kill()


def test_stop_kills_a_worker_that_ignores_sigterm(tmp_path: Path) -> None:
    polite = spawn(tmp_path, "urgent", "sleep 30")
    stubborn = spawn(tmp_path, "routine", "trap '' TERM; sleep 30 & wait; sleep 30")
    time.sleep(0.2)  # let the shell install its trap
    started = time.monotonic()
    stop_workers([polite, stubborn], grace=0.5)
    assert polite.process.returncode == -15  # SIGTERM was enough
    assert stubborn.process.returncode == -9  # SIGKILL after the grace period
    assert time.monotonic() - started < 10
