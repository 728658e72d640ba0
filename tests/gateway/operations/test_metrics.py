"""gateway.operations.metrics and `triage metrics`: /metrics scraped over HTTP from a real Redis and a real
ledger (SQLite and PostgreSQL), parsed with Prometheus's own text parser."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa
from kombu.transport.redis import Channel
from prometheus_client.parser import text_string_to_metric_families

from gateway.broker.server import redis_client
from gateway.operations.metrics import start_metrics_server
from ledger.database import upgrade_schema
from schemas.settings import Settings, get_settings
from schemas.tables import Delivery, Result, Study, UrgentCase
from testkit.services import redis_url_with_database
from tests.gateway.operations.scan_rows import insert_scans

METRICS_DB = 12  # a Redis database of its own, so other tests' queues do not count


@pytest.fixture
def broker_url(redis_server: str) -> Iterator[str]:
    url = redis_url_with_database(redis_server, METRICS_DB)
    client = redis_client(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def ledger(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


def serve(settings: Settings) -> tuple[str, object]:
    server, _thread = start_metrics_server(settings, "127.0.0.1", 0)
    return f"http://127.0.0.1:{server.server_port}/metrics", server


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def fetch(url: str) -> Samples:
    """One scrape over HTTP: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(settings: Settings) -> Samples:
    url, server = serve(settings)
    try:
        return fetch(url)
    finally:
        server.shutdown()
        server.server_close()


def by_label(samples: Samples, metric: str, label: str) -> dict[str, float]:
    return {
        dict(labels)[label]: value for (name, labels), value in samples.items() if name == metric
    }


def settings_for(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TRIAGE_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIAGE_REDIS_URL", redis_url)
    get_settings.cache_clear()
    return get_settings()


def fill_ledger(engine: sa.Engine) -> None:
    """Scans in every state, results from two model versions, an open urgent case and pending
    deliveries on two channels."""
    now = datetime.now(UTC)
    scans = [
        ("r-old", "routine", "queued", 120),
        ("r-new", "routine", "queued", 10),
        ("s-1", "stat", "queued", 30),
        ("busy-1", "routine", "processing", 500),
        ("busy-2", "stat", "processing", 500),
        ("broken", "stat", "failed", 900),
        ("done-1", "routine", "done", 900),
        ("done-2", "routine", "done", 900),
        ("done-3", "routine", "done", 900),
    ]
    with engine.begin() as connection:
        insert_scans(connection, scans, now)
        connection.execute(
            sa.insert(Result),
            [
                result_row("done-1", "v1", urgent=True),
                result_row("done-2", "v1", urgent=False),
                result_row("done-3", "v2", urgent=False),
            ],
        )
        connection.execute(sa.insert(Study), [study_row("done-1", now)])
        connection.execute(
            sa.insert(UrgentCase),
            [
                {
                    "scan_id": "done-1",
                    "study_id": "done-1",
                    "p2": 0.9,
                    "model_version": "v1",
                    "classified_at": now - timedelta(seconds=60),
                }
            ],
        )
        connection.execute(
            sa.insert(Delivery),
            [
                delivery_row("d-1", "hl7", "pending"),
                delivery_row("d-2", "fhir", "pending"),
                delivery_row("d-3", "dicom", "delivered"),
            ],
        )


def result_row(scan_id: str, version: str, urgent: bool) -> dict:
    p2 = 0.9 if urgent else 0.05
    return {
        "scan_id": scan_id,
        "predicted": 2 if urgent else 0,
        "p0": 0.9 if not urgent else 0.05,
        "p1": 0.05,
        "p2": p2,
        "urgent": urgent,
        "model_version": version,
        "classified_at": datetime.now(UTC),
    }


def study_row(study_id: str, now: datetime) -> dict:
    return {
        "id": study_id,
        "study_uid": f"triage:{study_id}",
        "priority": "routine",
        "status": "classified",
        "received_at": now - timedelta(seconds=900),
        "last_instance_at": now - timedelta(seconds=900),
        "closed_at": now - timedelta(seconds=900),
        "classified_at": now - timedelta(seconds=60),
        "p2": 0.9,
        "urgent": True,
        "predicted": 2,
        "top_scan_id": study_id,
        "model_version": "v1",
        "decisions": 1,
        "contradicting": 2,
    }


def delivery_row(delivery_id: str, channel: str, status: str) -> dict:
    return {
        "id": delivery_id,
        "study_id": "done-1",
        "decision": 1,
        "channel": channel,
        "idempotency_key": f"key-{delivery_id}",
        "status": status,
    }


def queue(name: str) -> tuple[tuple[str, str], ...]:
    return (("queue", name),)


def test_scrape_reports_queues_ledger_and_results_per_model_version(
    ledger: sa.Engine,
    database_url: str,
    broker_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fill_ledger(ledger)
    client = redis.Redis.from_url(broker_url)
    client.rpush("scans", "job-1", "job-2")
    client.rpush(f"stat{Channel.sep}3", "job-3")  # a priority list of `stat` counts too
    client.close()
    samples = scrape(settings_for(database_url, broker_url, monkeypatch))

    assert samples[("triage_up", ())] == 1
    depths = by_label(samples, "triage_queue_broker_depth", "queue")
    assert depths == {"stat": 1, "scans": 2, "urgent": 0}
    waiting = by_label(samples, "triage_queue_waiting", "queue")
    assert waiting == {"stat": 1, "scans": 2, "urgent": 0}
    assert 120 <= samples[("triage_queue_oldest_wait_seconds", queue("scans"))] < 180
    assert 30 <= samples[("triage_queue_oldest_wait_seconds", queue("stat"))] < 90
    assert samples[("triage_queue_oldest_wait_seconds", queue("urgent"))] == 0  # none waits
    assert samples[("triage_scans_processing", ())] == 2
    assert samples[("triage_scans_failed", ())] == 1
    assert samples[("triage_urgent_cases_open", ())] == 1
    pending = by_label(samples, "triage_deliveries_pending", "channel")
    assert pending == {
        "dicom": 0, "key_image": 0, "dicomweb": 0, "dicomweb_key": 0,
        "hl7": 1, "fhir": 1, "webhook": 0,
    }  # every channel, those with nothing waiting at 0  # fmt: skip
    assert by_label(samples, "triage_results_total", "model_version") == {"v1": 2, "v2": 1}
    assert samples[("triage_instances_contradicting_total", ())] == 2


def test_each_scrape_reads_afresh(
    ledger: sa.Engine,
    database_url: str,
    broker_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_for(database_url, broker_url, monkeypatch)
    url, server = serve(settings)
    try:
        first = fetch(url)
        fill_ledger(ledger)
        second = fetch(url)
    finally:
        server.shutdown()
        server.server_close()
    assert first[("triage_up", ())] == second[("triage_up", ())] == 1
    assert by_label(first, "triage_results_total", "model_version") == {}
    assert first[("triage_queue_waiting", queue("scans"))] == 0
    assert by_label(second, "triage_results_total", "model_version") == {"v1": 2, "v2": 1}
    assert second[("triage_queue_waiting", queue("scans"))] == 2


@pytest.mark.parametrize("unreachable", ["database", "broker", "schema"])
def test_a_scrape_that_cannot_read_reports_down(
    unreachable: str,
    broker_url: str,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    if unreachable == "database":
        database_url = "postgresql+psycopg://triage@127.0.0.1:1/triage"  # nothing listens
    else:
        upgrade_schema(sa.create_engine(database_url))
    if unreachable == "schema":
        database_url = f"sqlite:///{tmp_path / 'empty.db'}"  # no tables: never migrated
    if unreachable == "broker":
        broker_url = "redis://127.0.0.1:1/0"
    samples = scrape(settings_for(database_url, broker_url, monkeypatch))
    assert samples[("triage_up", ())] == 0
    assert {name for name, _ in samples} == {"triage_up", "triage_scrape_duration_seconds"}


def test_registering_the_collector_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.operations.metrics as metrics

    def fail(_settings: Settings) -> None:
        raise AssertionError("take_snapshot ran outside a scrape")

    monkeypatch.setattr(metrics, "take_snapshot", fail)
    registry = metrics.metrics_registry(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert registry is not None


def test_metrics_command_is_registered_with_its_options() -> None:
    import typer.main

    from triage.cli import app

    command = typer.main.get_command(app).commands["metrics"]
    options = {name: param for param in command.params for name in param.opts}
    assert options["--port"].default == 9108
    assert options["--host"].default == "127.0.0.1"  # no authentication: loopback unless asked
