"""`triage demo` end to end, twice, on the embedded defaults in a fresh data directory.

The demo trains on phantoms, starts real Celery worker processes on an embedded Redis and
classifies a batch into a SQLite ledger; this test checks the ledger, not just the exit code,
and that the demo left no process behind. The first run exits after its summary (`--no-web`);
the second serves the web page: its printed login is used over real HTTP, then Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.triage.test_demo_web import check_login_works, log_in, printed_login
from triage.demo_web import DEMO_USER, pick_port

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
        [sys.executable, "-m", "triage", "demo", *SMALL, "--no-web", *extra],
        capture_output=True,
        text=True,
        timeout=800,
        env=dict(os.environ, COLUMNS="200"),
    )


def run_demo_with_web() -> str:
    """The demo serving its web page: the printed login works, Ctrl-C ends it with status 0;
    returns its output."""
    port = pick_port(0)
    demo = subprocess.Popen(
        [sys.executable, "-m", "triage", "demo", *SMALL, "--web-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, COLUMNS="200"),
    )  # fmt: skip
    try:
        url, password, output = printed_login(demo, timeout=600)
        assert url == f"http://127.0.0.1:{port}/"
        check_login_works(url, password)
        with httpx.Client(base_url=url, timeout=10.0) as client:
            check_performance_shows_the_inputs(client, password)
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(timeout=120) == 0, output
    finally:
        demo.kill()
    return output


def check_performance_shows_the_inputs(client: httpx.Client, password: str) -> None:
    """The real workers' input statistics reach the page, against the demo card's reference."""
    assert log_in(client, DEMO_USER, password).status_code == 303
    page = client.get("/performance").text
    table = page[page.index('id="inputs"') :]
    assert "No scans with input statistics" not in table
    assert table.count('class="num mean_intensity') >= 1


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
    # the workers kept what each scan looked like (phantoms: never blank, never uniform)
    assert all(result["mean_intensity"] > 0 and result["contrast"] > 0 for result in results)
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

    second = run_demo_with_web()
    assert "reusing the demo model" in second
    check_ledger(short_data_dir, 2 * SCANS)
    assert not processes_using(short_data_dir), "the demo left processes running"
