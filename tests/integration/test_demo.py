"""`triage demo` end to end, twice, on the embedded defaults in a fresh data directory.

The demo trains on phantoms, starts real Celery worker processes on an embedded Redis and
classifies a batch into a SQLite ledger; this test checks the ledger, not just the exit code,
and that the demo left no process behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SCANS = 40
SMALL = ["--scans", str(SCANS), "--train-scans", "240", "--epochs", "2", "--timeout", "300"]


@pytest.fixture
def short_data_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data directory with a short path: the embedded Redis socket must stay < 100 chars."""
    directory = Path(tempfile.mkdtemp(prefix="triage-demo-", dir="/tmp"))
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def run_demo(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triage", "demo", *SMALL, *extra],
        capture_output=True,
        text=True,
        timeout=800,
        env=dict(os.environ, COLUMNS="200"),
    )


def ledger(data_dir: Path) -> dict[str, list[dict]]:
    engine = sa.create_engine(f"sqlite:///{data_dir / 'triage.db'}")
    tables = {}
    with engine.connect() as connection:
        for table in ("scans", "results", "urgent_cases", "studies"):
            rows = connection.execute(sa.text(f"SELECT * FROM {table}")).mappings()
            tables[table] = [dict(row) for row in rows]
    engine.dispose()
    return tables


def processes_using(data_dir: Path) -> list[str]:
    """Processes whose environment or command line names the data directory."""
    found = []
    marker = str(data_dir).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker in seen:
            found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:200]!r}")
    return found


def check_ledger(data_dir: Path, expected_scans: int) -> None:
    tables = ledger(data_dir)
    scans, results, cases = tables["scans"], tables["results"], tables["urgent_cases"]
    assert len(scans) == expected_scans
    assert {scan["status"] for scan in scans} == {"done"}
    assert all(scan["accession"].startswith("PHANTOM-") for scan in scans)
    assert sorted(result["scan_id"] for result in results) == sorted(scan["id"] for scan in scans)
    assert all(result["model_version"] for result in results)
    # the demo sends exams of up to 4 phantoms; each exam is decided once, and (the demo model
    # has no study rule) is urgent when any of its slices is: one worklist row per such exam
    studies = {study["id"]: study for study in tables["studies"]}
    assert {study["status"] for study in studies.values()} == {"classified"}
    slices: dict[str, list[str]] = {}
    for scan in scans:
        slices.setdefault(scan["study_id"], []).append(scan["id"])
    assert max(len(ids) for ids in slices.values()) == 4
    flagged = {result["scan_id"] for result in results if result["urgent"]}
    urgent = {sid for sid, ids in slices.items() if set(ids) & flagged}
    assert {study_id for study_id, row in studies.items() if row["urgent"]} == urgent
    assert {case["study_id"] for case in cases} == urgent and len(cases) == len(urgent)
    assert all(case["scan_id"] in slices[case["study_id"]] for case in cases)


def test_demo_runs_end_to_end_twice(short_data_dir: Path) -> None:
    first = run_demo()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "synthetic" in first.stdout
    assert "Urgent worklist" in first.stdout
    check_ledger(short_data_dir, SCANS)
    assert (short_data_dir / "demo" / "models" / "CURRENT").is_file()
    assert not processes_using(short_data_dir), "the demo left processes running"

    second = run_demo()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "reusing the demo model" in second.stdout
    check_ledger(short_data_dir, 2 * SCANS)
    assert not processes_using(short_data_dir), "the demo left processes running"
