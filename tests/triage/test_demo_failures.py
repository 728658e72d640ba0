"""How `triage demo` fails: dead workers, stuck scans and stubborn children, in seconds."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from schemas.settings import get_settings
from triage import demo_workers
from triage.demo import ledger_state, wait_for_results
from triage.demo_workers import DemoError, WorkerProcesses
from worker import ledger
from worker.database import engine_for, ensure_schema


@pytest.fixture
def workers(tmp_path: Path) -> WorkerProcesses:
    processes = WorkerProcesses(get_settings(), tmp_path / "logs", tmp_path / "models")
    yield processes
    processes.stop()


def spawn(workers: WorkerProcesses, name: str, script: str) -> subprocess.Popen:
    workers.log_dir.mkdir(parents=True, exist_ok=True)
    workers.log_path(name).write_text("booting\nmodel not found: run triage train\n")
    child = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    workers.children[name] = child
    return child


def queued_scans(count: int) -> list[str]:
    engine = engine_for(get_settings().resolved_database_url)
    ensure_schema(engine)
    pixels = np.zeros((64, 64), np.uint8).tobytes()
    new = [ledger.NewScan(f"scan-{index}", pixels, None, "test") for index in range(count)]
    ledger.add_scans(engine, new, "routine")
    return [scan.scan_id for scan in new]


def test_a_dead_worker_is_named_with_its_log(workers: WorkerProcesses) -> None:
    spawn(workers, "routine", "exit 3").wait()
    with pytest.raises(DemoError, match=r"routine worker exited with status 3") as error:
        workers.check_alive()
    assert "model not found" in str(error.value)


def test_waiting_times_out_naming_the_stuck_scans(workers: WorkerProcesses) -> None:
    scan_ids = queued_scans(12)
    spawn(workers, "routine", "sleep 30")
    with pytest.raises(DemoError) as error:
        wait_for_results(get_settings(), scan_ids, workers, 0.5, Console(quiet=True))
    message = str(error.value)
    assert "12 scans unfinished" in message
    assert "scan-0 (queued)" in message and "and 2 more" in message
    state = ledger_state(engine_for(get_settings().resolved_database_url), scan_ids)
    assert state == {"finished": 0, "escalations_waiting": 0}


def test_stop_kills_a_worker_that_ignores_sigterm(
    workers: WorkerProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_workers, "GRACE_SECONDS", 0.5)
    polite = spawn(workers, "urgent", "sleep 30")
    stubborn = spawn(workers, "routine", "trap '' TERM; sleep 30 & wait; sleep 30")
    time.sleep(0.2)  # let the shell install its trap
    started = time.monotonic()
    workers.stop()
    assert polite.returncode == -15  # SIGTERM was enough
    assert stubborn.returncode == -9  # SIGKILL after the grace period
    assert time.monotonic() - started < 10
    assert workers.children == {}
