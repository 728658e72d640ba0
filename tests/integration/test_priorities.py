"""Urgent work never waits behind routine work: separate queues, served in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from schemas.settings import get_settings
from schemas.tables import Result, Scan, UrgentCase
from tests.fixtures_model import brightness_scans
from tests.integration.conftest import wait_for
from worker.client import submit_images
from worker.database import engine_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def test_urgent_worker_fills_the_worklist_while_the_routine_backlog_waits(
    pipeline_factory, tmp_path: Path
) -> None:
    pipeline = pipeline_factory(sqlite_url(tmp_path), batch_size=8)
    routine = submit_images(brightness_scans([40, 220] * 40, seed=1))  # 80 scans, 10 jobs
    stat = submit_images(brightness_scans([230] * 6, seed=2), priority="stat")
    assert (pipeline.queue_length("scans"), pipeline.queue_length("stat")) == (10, 1)

    # no routine worker at all; the urgent worker needs no model (its model dir is empty)
    pipeline.start_worker("urgent", "urgent", TRIAGE_MODEL_DIR=str(tmp_path / "no-models"))
    pipeline.start_worker("stat", "stat")
    engine = engine_for(get_settings().resolved_database_url)

    def worklist_size() -> int:
        with engine.connect() as connection:
            return connection.scalar(sa.select(sa.func.count()).select_from(UrgentCase))

    wait_for(lambda: worklist_size() == 6, "the six stat scans on the urgent worklist")
    with engine.connect() as connection:
        on_worklist = set(connection.scalars(sa.select(UrgentCase.scan_id)))
        routine_results = connection.scalar(
            sa.select(sa.func.count()).where(Result.scan_id.in_([i for i, _ in routine.queued]))
        )
        routine_status = set(
            connection.scalars(sa.select(Scan.status).where(Scan.priority == "routine"))
        )
    assert on_worklist == {scan_id for scan_id, _ in stat.queued}
    assert pipeline.queue_length("scans") == 10  # the whole routine backlog still waits
    assert routine_results == 0 and routine_status == {"queued"}


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
