"""The operations page's roll call: a real worker process is listed alive with its queues,
and as gone once it has stopped (real Redis, real `celery -A worker worker`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ledger.accounts import add_token, add_user
from ledger.database import engine_for
from schemas.settings import get_settings
from tests.web.conftest import PASSWORD, log_in
from web.app import create_app
from web.passwords import generate_token, hash_password, token_digest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def worker_row(page: str, node: str) -> str:
    """The workers table's row of `node`."""
    start = page.index(f'data-worker="{node}"')
    return page[start : page.index("</tr>", start)]


def test_the_operations_page_lists_a_live_worker_and_then_its_absence(
    pipeline_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = pipeline_factory(f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("TRIAGE_WEB_SECRET_KEY", "w" * 40)
    get_settings.cache_clear()
    engine = engine_for(get_settings().resolved_database_url)
    add_user(engine, "oscar", "operator", hash_password(PASSWORD))
    token = generate_token()
    add_token(engine, "ops-board", "operator", token_digest(token))
    bearer = {"Authorization": f"Bearer {token}"}
    # the urgent worker needs no model (its model dir is empty)
    worker = pipeline.start_worker(
        "urgent,deliveries", "roll-call", TRIAGE_MODEL_DIR=str(tmp_path / "no-models")
    )
    with TestClient(create_app(get_settings())) as client:
        log_in(client, "oscar")
        alive = worker_row(client.get("/operations").text, worker.node)
        assert "<td>alive</td>" in alive and "deliveries, urgent" in alive
        (listed,) = client.get("/api/v1/workers", headers=bearer).json()["workers"]
        assert listed["name"] == worker.node and listed["alive"] is True
        assert listed["queues"] == ["deliveries", "urgent"]

        pipeline.stop_workers()
        gone = worker_row(client.get("/operations").text, worker.node)
        assert "<td>gone</td>" in gone and "deliveries, urgent" in gone
        (listed,) = client.get("/api/v1/workers", headers=bearer).json()["workers"]
        assert listed["alive"] is False
    add_user(engine, "alice", "clinician", hash_password(PASSWORD))
    with TestClient(create_app(get_settings())) as client:
        log_in(client, "alice")
        assert client.get("/api/v1/workers").status_code == 403
