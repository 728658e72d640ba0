"""Maximum wait: routine scans that have waited too long overtake newer routine work."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.intake.client import submit_images
from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Result, Scan, utcnow
from tests.fixtures_model import brightness_scans
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_overdue_routine_scans_are_classified_before_the_newer_backlog(
    pipeline_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_size = 4
    pipeline = pipeline_factory(f"sqlite:///{tmp_path / 'ledger.db'}", batch_size=batch_size)
    pipeline.env.update(TRIAGE_MAX_WAIT_SECONDS="60", TRIAGE_STUCK_AFTER_SECONDS="3600")
    backlog = submit_images(brightness_scans([40, 60, 80, 90] * 40, seed=31))  # 160 scans
    overdue = submit_images(brightness_scans([50, 70, 85, 95] * 2, seed=32))  # at the tail
    overdue_ids = [scan_id for scan_id, _ in overdue.queued]
    engine = engine_for(get_settings().resolved_database_url)
    with engine.begin() as connection:  # they have waited 40 s of a 60 s cap
        connection.execute(
            sa.update(Scan)
            .where(Scan.id.in_(overdue_ids))
            .values(
                received_at=utcnow() - timedelta(seconds=40),
                published_at=utcnow() - timedelta(seconds=39),
            )
        )

    reconciled = pipeline.triage("reconcile", "--json")
    assert reconciled.returncode == 0, reconciled.stderr
    assert '"moved_ahead": 8' in reconciled.stdout and '"republished": 0' in reconciled.stdout
    assert pipeline.queue_length("stat") == 2  # two jobs of four ids

    pipeline.start_worker("stat,scans", "routine")
    wait_for(lambda: _results(engine) == 168, "the overdue scans and the backlog")
    with engine.connect() as connection:
        last_overdue = connection.scalar(
            sa.select(sa.func.max(Result.classified_at)).where(Result.scan_id.in_(overdue_ids))
        )
        backlog_before = connection.scalar(
            sa.select(sa.func.count()).where(
                Result.scan_id.in_([i for i, _ in backlog.queued]),
                Result.classified_at < last_overdue,
            )
        )
    # without the move they would come last, after all 160; with it, first
    assert backlog_before == 0, f"{backlog_before} newer routine scans went first"


def _results(engine) -> int:  # noqa: ANN001 - sqlalchemy Engine
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(Result))
