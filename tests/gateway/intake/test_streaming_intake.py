"""`submit_scans` streams: chunks of scans are recorded and published as the files are read
(a real SQLite ledger; the broker is replaced by a recorder that reads the ledger)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from gateway.intake import client
from ledger.database import engine_for, upgrade_schema
from ledger.statements import scans, studies
from schemas.settings import get_settings
from tests.fixtures_model import brightness_scans

REPO_ROOT = Path(__file__).resolve().parents[3]


def ledger_counts() -> tuple[int, int]:
    """(scans recorded, scans held) in the ledger right now."""
    with engine_for(get_settings().resolved_database_url).begin() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(scans)).scalar_one()
        held = connection.execute(
            sa.select(sa.func.count()).where(scans.c.status == "held")
        ).scalar_one()
    return int(total), int(held)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Each publish: (scans in it, scans recorded then, held then)."""
    upgrade_schema(engine_for(get_settings().resolved_database_url))
    calls: list[tuple[int, int, int]] = []

    def record(scan_ids, _priority, _settings) -> int:  # noqa: ANN001
        calls.append((len(scan_ids), *ledger_counts()))
        return 1

    monkeypatch.setattr(client, "publish_jobs", record)
    monkeypatch.setattr(client, "CHUNK_SCANS", 4)
    return calls


def stacks(folder: Path, files: int, per_file: int) -> Path:
    folder.mkdir(parents=True)
    for number in range(files):
        np.save(folder / f"stack-{number:02d}.npy", brightness_scans([60] * per_file, seed=number))
    return folder


def test_scans_are_recorded_and_published_chunk_by_chunk(
    tmp_path: Path, published: list[tuple[int, int, int]]
) -> None:
    submission = client.submit_scans([stacks(tmp_path / "in", files=5, per_file=3)])
    assert len(submission.queued) == 15 and submission.rejected == []
    assert [count for count, _recorded, _held in published] == [6, 6, 3]  # chunks of >= 4
    assert [recorded for _count, recorded, _held in published] == [6, 12, 15]  # as it goes


def test_a_study_spanning_chunks_is_held_until_the_call_ends(
    tmp_path: Path, published: list[tuple[int, int, int]]
) -> None:
    submission = client.submit_scans([stacks(tmp_path / "in", files=5, per_file=3)], study="one")
    assert len(submission.queued) == 15
    assert published == [(15, 15, 0)]  # closed once, at the end, all slices together
    with engine_for(get_settings().resolved_database_url).begin() as connection:
        rows = connection.execute(sa.select(studies.c.status)).scalars().all()
    assert rows == ["queued"]


def enqueue_peak_mib(tmp_path: Path, stacks_of_10000: int) -> float:
    """Peak memory of `triage enqueue` of this many stacks of 10,000 scans, in a child
    process (the broker absent: the scans are recorded and left for the reconciler)."""
    folder = tmp_path / f"in-{stacks_of_10000}"
    folder.mkdir()
    tile = brightness_scans([40, 90, 140, 190, 240] * 2, seed=7)  # 10 distinct scans
    for number in range(stacks_of_10000):
        np.savez_compressed(folder / f"stack-{number}.npz", images=np.tile(tile, (1_000, 1, 1)))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "PYTHONPATH": str(REPO_ROOT),
        "TRIAGE_DATA_DIR": str(tmp_path / f"data-{stacks_of_10000}"),
        "TRIAGE_REDIS_URL": "redis://127.0.0.1:9/0",
    }
    upgrade = [sys.executable, "-m", "triage", "db", "upgrade"]
    subprocess.run(upgrade, env=env, check=True, capture_output=True)
    probe = (
        "import resource, runpy, sys; sys.argv = ['triage', 'enqueue', sys.argv[1]]\n"
        "try:\n    runpy.run_module('triage', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    command = [sys.executable, "-c", probe, str(folder)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    recorded = f"{stacks_of_10000 * 10_000} scans are recorded as queued"
    assert recorded in done.stderr, done.stderr[-2000:]
    return int(done.stderr.split("peak_kib")[-1].split()[0]) / 1024


def test_enqueue_memory_does_not_grow_with_the_call(tmp_path: Path) -> None:
    smaller, larger = enqueue_peak_mib(tmp_path, 2), enqueue_peak_mib(tmp_path, 5)
    print(f"\nenqueue peak RSS: 20,000 scans {smaller:.0f} MiB, 50,000 scans {larger:.0f} MiB")
    # held all at once (before streaming), the 30,000 more scans cost several times the bound
    assert larger - smaller < 80, f"30,000 more scans cost {larger - smaller:.0f} MiB"
