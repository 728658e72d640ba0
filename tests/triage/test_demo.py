"""How `triage demo` fails: stuck scans are named, in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from ledger import scans as ledger
from ledger.database import engine_for, upgrade_schema
from schemas.settings import get_settings
from triage.demo import DemoError, ledger_state, wait_for_results
from worker.processes import WorkerProcess


def queued_scans(count: int) -> list[str]:
    engine = engine_for(get_settings().resolved_database_url)
    upgrade_schema(engine)
    pixels = np.zeros((64, 64), np.uint8).tobytes()
    new = [ledger.NewScan(f"scan-{index}", pixels, None, "test") for index in range(count)]
    ledger.add_scans(engine, new, "routine")
    return [scan.scan_id for scan in new]


def test_waiting_times_out_naming_the_stuck_scans(tmp_path: Path) -> None:
    scan_ids = queued_scans(12)
    worker = WorkerProcess("routine", ["sleep", "30"], None, tmp_path / "logs")
    try:
        with pytest.raises(DemoError) as error:
            wait_for_results(get_settings(), scan_ids, [worker], 0.5, Console(quiet=True))
    finally:
        worker.kill()
    message = str(error.value)
    assert "12 scans unfinished" in message
    assert "scan-0 (queued)" in message and "and 2 more" in message
    state = ledger_state(engine_for(get_settings().resolved_database_url), scan_ids)
    assert state == {"finished": 0, "undecided": 12, "escalations_waiting": 0}


def test_scans_done_but_studies_not_yet_decided_are_not_finished(tmp_path: Path) -> None:
    """A job records its results, then decides the studies in a second transaction: the demo
    waits for the decisions, or it would count the worklist before they land."""
    scan_ids = queued_scans(3)
    engine = engine_for(get_settings().resolved_database_url)
    ledger.claim(engine, scan_ids, max_attempts=3)
    scored = [ledger.ScoredScan(sid, (0.0, 0.0, 1.0), 2, True) for sid in scan_ids]
    ledger.record_results(engine, scored, "v1", "/models/v1", 0.5, {})
    assert ledger_state(engine, scan_ids) == {
        "finished": 3, "undecided": 3, "escalations_waiting": 0,
    }  # fmt: skip
    worker = WorkerProcess("routine", ["sleep", "30"], None, tmp_path / "logs")
    try:
        with pytest.raises(DemoError):
            wait_for_results(get_settings(), scan_ids, [worker], 0.5, Console(quiet=True))
    finally:
        worker.kill()


def test_a_worker_that_dies_while_waiting_ends_the_demo(tmp_path: Path) -> None:
    scan_ids = queued_scans(3)
    worker = WorkerProcess("routine", ["sh", "-c", "exit 3"], None, tmp_path / "logs")
    worker.process.wait()
    with pytest.raises(Exception, match="worker routine exited with status 3"):
        wait_for_results(get_settings(), scan_ids, [worker], 5.0, Console(quiet=True))
