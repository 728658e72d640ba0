"""The retention pass's rate: scans aged past TRIAGE_KEEP_PIXELS_DAYS, purged in windows.

The ledger is filled through its own writes (intake, claim, results, the study decision), in
studies of ten slices, then aged by the clock the pass is given. Two passes are timed: one
that walks every pixel row and finds nothing expired yet (what a pass costs per row held),
and one that removes them all; then a pass a year on removes the studies whole (scans,
results, study rows). `--database postgresql` starts a throwaway cluster.

    python -m bench.retention_rate --scans 100000 --database sqlite
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from ledger import retention, studies
from ledger import scans as ledger
from ledger.database import create_ledger_engine, upgrade_schema
from ledger.studies import StudyRef
from schemas.model_card import ModelCard
from schemas.tables import utcnow
from testkit.services import PostgresServer, create_database

CARD = ModelCard(version="bench", created_at="2026-12-01T00:00:00Z", urgent_threshold=0.5)
ROUND = 1000  # scans per intake call
SLICES = 10


def fill(engine, count: int) -> None:  # noqa: ANN001 - Engine
    """`count` classified, decided scans in studies of SLICES slices."""
    for start in range(0, count, ROUND):
        made = []
        for index in range(start, min(count, start + ROUND)):
            study = StudyRef(f"bench:{index // SLICES}", None, None)
            made.append(ledger.NewScan(str(uuid.uuid4()), bytes(4096), None, None, study))
        ids = ledger.add_scans(engine, made, "routine").new
        ledger.claim(engine, ids, max_attempts=3)
        scored = [ledger.ScoredScan(sid, (0.9, 0.05, 0.05), 0, False) for sid in ids]
        ledger.record_results(engine, scored, "bench", "/bench", 0.5, {})
        studies.decide_ready(engine, ids, CARD, "bench")


def timed_pass(engine, now) -> tuple[float, retention.PurgeReport]:  # noqa: ANN001
    started = time.perf_counter()
    report = retention.purge(engine, 30, now=now)
    return time.perf_counter() - started, report


def measure(url: str, count: int) -> None:
    engine = create_ledger_engine(url)
    upgrade_schema(engine)
    started = time.perf_counter()
    fill(engine, count)
    print(f"filled {count} scans in {time.perf_counter() - started:.1f} s")
    walk_s, walk = timed_pass(engine, utcnow())
    assert walk.pixels == 0 and walk.pixels_held == count
    print(
        f"walk, nothing expired: {count / walk_s:,.0f} rows/s ({walk_s:.2f} s, {walk.batches} tx)"
    )
    purge_s, purged = timed_pass(engine, utcnow() + timedelta(days=31))
    assert purged.pixels == count and purged.pixels_held == 0
    print(f"purge: {count / purge_s:,.0f} pixel rows/s ({purge_s:.2f} s, {purged.batches} tx)")
    started = time.perf_counter()
    whole = retention.purge(engine, 30, 365, now=utcnow() + timedelta(days=366))
    whole_s = time.perf_counter() - started
    assert whole.scans == count and whole.studies == count // SLICES
    print(
        f"whole studies (keep_results_days): {count / whole_s:,.0f} scans/s with their results"
        f" ({whole_s:.2f} s, {whole.studies} studies, {whole.batches} tx)"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=100_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="triage-retention-"))
    directory.chmod(0o755)
    try:
        if args.database == "sqlite":
            measure(f"sqlite:///{directory / 'ledger.db'}", args.scans)
            return
        server = PostgresServer(directory / "cluster").start()
        try:
            measure(create_database(server.url), args.scans)
        finally:
            server.stop(mode="immediate")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
