"""Retention on a ledger the pipeline's own writes filled, on SQLite and PostgreSQL.

Rows are aged by the clock the code reads (the `now` a pass is given), never by sleeping:
pixels go only where allowed, in windows of at most one batch; results, decisions, worklist
rows and deliveries stay identical; an open case, an urgent study not yet listed, an
undecided study and a pending delivery keep their pixels at any age; a dry run changes
nothing. Then the same through the real parts: `triage purge --dry-run`, the urgent
worker's beat running the retention task, and `triage stats` reading what it recorded.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.broker.server import redis_client
from gateway.operations.retention_report import read_state
from ledger import retention
from ledger.database import create_ledger_engine, engine_for, upgrade_schema
from tests.integration.conftest import wait_for
from tests.ledger.retention_cases import make_cases, scans_of, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
KEEP = 30
UNTOUCHED = ("scans", "results", "studies", "urgent_cases", "deliveries")


def _deletes(engine: sa.Engine) -> list[int]:
    """Row counts of every DELETE the engine runs from now on."""
    counts: list[int] = []

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _count(_conn, cursor, statement, *_args) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("DELETE"):
            counts.append(cursor.rowcount)

    return counts


def test_aged_rows_lose_their_pixels_only_where_allowed(database_url: str) -> None:
    engine = create_ledger_engine(database_url)
    upgrade_schema(engine)
    cases = make_cases(engine, plain=5, slices=200)  # 2,200 pixel rows: three windows
    kept_studies = [cases.open_case, cases.unlisted, cases.unsent, cases.undecided]
    kept = scans_of(engine, kept_studies)
    gone = scans_of(engine, [*cases.purgeable, cases.acknowledged])
    before = snapshot(engine)
    later = cases.between + timedelta(days=KEEP)

    dry = retention.purge(engine, KEEP, now=later, dry_run=True)
    assert snapshot(engine) == before
    deletes = _deletes(engine)
    report = retention.purge(engine, KEEP, now=later)
    after = snapshot(engine)

    assert len(gone) == 1200 and (dry.pixels, report.pixels) == (1200, 1200)
    assert set(after["pixels"]) == set(before["pixels"]) - gone
    assert report.pixels_held == len(after["pixels"]) == 1000
    for name in UNTOUCHED:
        assert after[name] == before[name], name
    assert after["saliency"] == before["saliency"] - {cases.acknowledged}
    assert report.batches == 3 and dry.batches == 3 and max(deletes) <= retention.BATCH_ROWS
    # ten years on: the young study's pixels go too, the kept ones still stay
    retention.purge(engine, KEEP, now=cases.between + timedelta(days=3650))
    final = snapshot(engine)
    assert set(final["pixels"]) == kept
    assert all(final["pixels"][sid] == before["pixels"][sid] for sid in kept)
    assert {cases.open_case, cases.unlisted} <= final["saliency"]
    for name in UNTOUCHED:
        assert final[name] == before[name], name
    engine.dispose()


def test_the_beat_purges_and_stats_and_the_dry_run_report_it(
    pipeline_factory, database_url: str
) -> None:  # noqa: ANN001
    env = {
        "TRIAGE_KEEP_PIXELS_DAYS": "0",  # every decided study is past its keep at once
        "TRIAGE_PURGE_EVERY_SECONDS": "1",
        "TRIAGE_RECONCILE_EVERY_SECONDS": "3600",  # nothing else writes meanwhile
    }
    pipeline = pipeline_factory(database_url, env=env)
    engine = engine_for(database_url)
    cases = make_cases(engine, plain=2, slices=3)
    kept = scans_of(engine, [cases.open_case, cases.unlisted, cases.unsent, cases.undecided])
    before = snapshot(engine)
    gone = set(before["pixels"]) - kept

    dry = pipeline.triage("purge", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counts = json.loads(dry.stdout)
    assert (counts["dry_run"], counts["pixels"], counts["key_images"]) == (True, len(gone), 1)
    assert snapshot(engine) == before

    schedule = str(pipeline.directory / "beat-urgent")
    pipeline.start_worker("urgent", "urgent", extra_args=("-B", "-s", schedule))
    client = redis_client(pipeline.redis_url)
    wait_for(lambda: read_state(client).pixels_held is not None, "a recorded retention pass")
    state = read_state(client)
    assert state.purged["pixels"] == len(gone) and state.pixels_held == len(kept)
    after = snapshot(engine)
    assert set(after["pixels"]) == kept
    for name in UNTOUCHED:
        assert after[name] == before[name], name

    stats = pipeline.triage("stats", "--json")
    assert stats.returncode == 0, stats.stderr
    shown = json.loads(stats.stdout)["retention"]
    assert (shown["pixels_held"], shown["purged"]["pixels"]) == (len(kept), len(gone))
    assert shown["keep_pixels_days"] == 0 and shown["oldest_pixels_age_seconds"] is not None
