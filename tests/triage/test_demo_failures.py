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
    assert state == {"finished": 0, "escalations_waiting": 0}


def test_a_worker_that_dies_while_waiting_ends_the_demo(tmp_path: Path) -> None:
    scan_ids = queued_scans(3)
    worker = WorkerProcess("routine", ["sh", "-c", "exit 3"], None, tmp_path / "logs")
    worker.process.wait()
    with pytest.raises(Exception, match="worker routine exited with status 3"):
        wait_for_results(get_settings(), scan_ids, [worker], 5.0, Console(quiet=True))
