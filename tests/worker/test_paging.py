"""Paging clinicians: a log line and its record in the ledger, and nothing else. The webhook
is the outbox's channel; paging never sends it, so no endpoint can delay or break a page."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.outbox.webhook import notify
from ledger import reads, worklist
from ledger import scans as ledger
from ledger.database import create_ledger_engine, upgrade_schema
from schemas.messages import Escalation
from schemas.settings import get_settings
from tests.gateway.outbox.webhook_peers import Handler, http_endpoint
from worker.paging import page_clinicians


def urgent_cases(tmp_path: Path, count: int) -> tuple[sa.Engine, list[str]]:
    """`count` urgent studies of one scan each on the worklist, none paged yet."""
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'pages.db'}")
    upgrade_schema(engine)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    ledger.add_scans(engine, [ledger.NewScan(i, bytes(4096), None, None) for i in ids], "routine")
    when = ledger.utcnow()
    escalations = [
        Escalation(
            scan_id=i,
            study_id=reads.history(engine, i)["study_id"],  # each scan: a study of its own
            p2=0.9,
            model_version="v",
            classified_at=when,
        )
        for i in ids
    ]
    worklist.add_urgent_cases(engine, escalations)
    return engine, ids


def test_paging_never_calls_the_webhook_and_the_outbox_still_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With TRIAGE_NOTIFY_URL pointing at a live endpoint, paging posts nothing to it; the
    endpoint is reachable (the outbox's own send arrives), so a page that used it would show."""
    engine, ids = urgent_cases(tmp_path, count=5)
    with http_endpoint() as base:
        monkeypatch.setenv("TRIAGE_DATABASE_URL", str(engine.url))
        monkeypatch.setenv("TRIAGE_NOTIFY_URL", f"{base}/ok")
        get_settings.cache_clear()
        settings = get_settings()
        with caplog.at_level(logging.WARNING, logger="worker.paging"):
            assert page_clinicians(settings, ids) == ids
        assert Handler.hits == [], "paging sent the webhook"
        assert all(reads.history(engine, i)["notified_at"] is not None for i in ids)
        assert sum("URGENT scan" in r.getMessage() for r in caplog.records) == len(ids)
        assert notify(settings.notify_url, ids[0], study_id="study-of-the-outbox") is True
        assert Handler.hits == ["/ok"]  # the outbox's delivery, the only request it saw
    engine.dispose()


def test_a_page_recorded_nowhere_still_returns_its_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worklist row is committed before paging: a ledger that cannot record the page does
    not make paging raise (the reconciler pages it again)."""
    engine, ids = urgent_cases(tmp_path, count=2)
    monkeypatch.setenv("TRIAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'missing' / 'no.db'}")
    get_settings.cache_clear()
    assert page_clinicians(get_settings(), ids) == ids
    assert all(reads.history(engine, i)["notified_at"] is None for i in ids)
    engine.dispose()
