"""`triage purge`: counts of what would go and what went, the record it leaves on the broker."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gateway.broker.server import redis_client
from gateway.operations.retention_report import read_state
from ledger.database import engine_for, upgrade_schema
from schemas.settings import get_settings
from testkit.services import redis_url_with_database
from tests.ledger.retention_cases import make_cases, scans_of, snapshot
from triage.cli import app

PURGE_DB = 14


def test_purge_says_what_would_go_then_removes_it(
    database_url: str, redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_url = redis_url_with_database(redis_server, PURGE_DB)
    client = redis_client(redis_url)
    client.flushdb()
    monkeypatch.setenv("TRIAGE_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIAGE_REDIS_URL", redis_url)
    monkeypatch.setenv("TRIAGE_KEEP_PIXELS_DAYS", "0")
    get_settings.cache_clear()
    engine = engine_for(database_url)
    upgrade_schema(engine)
    cases = make_cases(engine, plain=1, slices=2)
    kept = scans_of(engine, [cases.open_case, cases.unlisted, cases.unsent, cases.undecided])
    before = snapshot(engine)
    would = CliRunner().invoke(app, ["purge", "--dry-run"])
    assert would.exit_code == 0, would.output
    assert "dry run: nothing removed" in would.output and "pixel rows" in would.output
    assert snapshot(engine) == before and read_state(client).purged["pixels"] == 0
    went = CliRunner().invoke(app, ["purge", "--json"])
    assert went.exit_code == 0, went.output
    counts = json.loads(went.output)
    assert (counts["pixels"], counts["pixels_held"], counts["dry_run"]) == (6, len(kept), False)
    assert set(snapshot(engine)["pixels"]) == kept
    assert read_state(client).purged["pixels"] == 6
    assert not any(uid in went.output for uid in ("ACC-", "1.2."))  # counts only
    client.flushdb()
