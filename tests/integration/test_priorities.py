"""Urgent work never waits behind routine work: separate queues, served in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from gateway.intake.client import submit_images
from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Result, Scan, UrgentCase
from tests.fixtures_model import brightness_scans
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def test_urgent_and_stat_work_is_served_while_a_routine_backlog_is_being_worked(
    pipeline_factory, tmp_path: Path
) -> None:
    """Every queue has its consumer: the routine worker is busy with a long backlog while the
    stat worker classifies stat scans and the urgent worker puts them on the worklist."""
    pipeline = pipeline_factory(sqlite_url(tmp_path), batch_size=8)
    # the urgent worker needs no model (its model dir is empty)
    pipeline.start_worker("urgent", "urgent", TRIAGE_MODEL_DIR=str(tmp_path / "no-models"))
    pipeline.start_worker("stat", "stat")
    pipeline.start_worker("scans", "routine")
    engine = engine_for(get_settings().resolved_database_url)
    backlog = submit_images(brightness_scans([40, 60, 80, 220] * 400, seed=1))  # 200 jobs
    stat = submit_images(brightness_scans([230] * 6, seed=2), priority="stat")
    stat_ids = {scan_id for scan_id, _ in stat.queued}
    routine_ids = [scan_id for scan_id, _ in backlog.queued]

    def stat_listed() -> bool:
        with engine.connect() as connection:
            listed = set(connection.scalars(sa.select(UrgentCase.scan_id)))
        return stat_ids <= listed

    wait_for(stat_listed, "the six stat scans on the urgent worklist")
    with engine.connect() as connection:
        routine_done = connection.scalar(
            sa.select(sa.func.count()).where(Result.scan_id.in_(routine_ids))
        )
    assert routine_done < len(routine_ids), "the backlog was gone: nothing waited behind it"

    def backlog_done() -> bool:
        with engine.connect() as connection:
            done = connection.scalar(
                sa.select(sa.func.count()).where(Scan.status == "done", Scan.priority == "routine")
            )
        return done == len(routine_ids)

    wait_for(backlog_done, "the routine worker to drain its backlog", timeout=180)

    def listed() -> int:
        with engine.connect() as connection:
            return connection.scalar(sa.select(sa.func.count()).select_from(UrgentCase))

    # the stat scans and every bright routine scan (the last escalations may still be in flight)
    wait_for(lambda: listed() == 6 + 400, "every urgent study on the worklist", timeout=60)
    assert listed() == 6 + 400  # and no more
    assert pipeline.queue_length("scans") == pipeline.queue_length("stat") == 0


def test_a_stat_scan_behind_a_routine_backlog_is_classified_before_the_backlog_drains(
    pipeline_factory, tmp_path: Path
) -> None:
    batch_size = 4
    pipeline = pipeline_factory(sqlite_url(tmp_path), batch_size=batch_size)
    backlog = submit_images(brightness_scans(list(np.linspace(20, 100, 160, dtype=int)), seed=3))
    stat = submit_images(brightness_scans([235], seed=4), priority="stat")
    (stat_id, _source) = stat.queued[0]
    assert pipeline.queue_length("scans") == 40

    pipeline.start_worker("stat,scans", "routine", pool="prefork")
    engine = engine_for(get_settings().resolved_database_url)

    def all_done() -> bool:
        with engine.connect() as connection:
            return connection.scalar(sa.select(sa.func.count()).select_from(Result)) == 161

    wait_for(all_done, "the backlog and the stat scan to be classified")
    with engine.connect() as connection:
        stat_at = connection.scalar(
            sa.select(Result.classified_at).where(Result.scan_id == stat_id)
        )
        routine_before = connection.scalar(
            sa.select(sa.func.count()).where(
                Result.scan_id.in_([i for i, _ in backlog.queued]),
                Result.classified_at < stat_at,
            )
        )
    # at most one routine job (already taken when the stat job arrived) may come first
    assert routine_before <= batch_size, f"{routine_before} routine scans went first"
