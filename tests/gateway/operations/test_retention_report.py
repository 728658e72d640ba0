"""gateway.operations.retention_report on a real Redis, and what a scrape shows of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa

from gateway.broker.server import redis_client
from gateway.operations.retention_report import read_state, record_pass
from ledger.database import upgrade_schema
from ledger.retention import PurgeReport
from testkit.services import redis_url_with_database
from tests.gateway.operations.test_metrics import by_label, scrape, settings_for

REPORT_DB = 13
AT = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def broker(redis_server: str) -> Iterator[tuple[str, redis.Redis]]:
    url = redis_url_with_database(redis_server, REPORT_DB)
    client = redis_client(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


def part(
    walked_from: str, resume_after: str | None, held: int, oldest_days: int, at: datetime = AT
) -> PurgeReport:
    return PurgeReport(
        dry_run=False,
        pixels=10,
        key_images=1,
        walked_from=walked_from,
        resume_after=resume_after,
        pixels_held=held,
        oldest_pixels_at=at - timedelta(days=oldest_days),
    )


def test_nothing_recorded_reads_as_zeros(broker) -> None:  # noqa: ANN001
    state = read_state(broker[1])
    assert state.purged == {"pixels": 0, "key_images": 0, "scans": 0, "studies": 0}
    assert (state.last_pass_at, state.pixels_held, state.resume_after) == (None, None, "")


def test_a_walk_in_parts_sums_what_it_held_and_totals_only_grow(broker) -> None:  # noqa: ANN001
    client = broker[1]
    record_pass(client, part("", "k1", 5, 3), AT)
    state = read_state(client)
    assert (state.pixels_held, state.resume_after, state.purged["pixels"]) == (None, "k1", 10)
    record_pass(client, part("k1", None, 7, 9), AT + timedelta(minutes=5))
    state = read_state(client)
    assert (state.pixels_held, state.resume_after, state.purged["pixels"]) == (12, "", 20)
    assert state.oldest_pixels_at == AT - timedelta(days=9)
    assert state.last_pass_at == AT + timedelta(minutes=5)
    record_pass(client, part("", None, 4, 1), AT + timedelta(minutes=10))  # a new whole walk
    state = read_state(client)
    assert (state.pixels_held, state.purged["key_images"]) == (4, 3)
    assert state.oldest_pixels_at == AT - timedelta(days=1)


def test_a_dry_run_is_not_recorded(broker) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="dry run"):
        record_pass(broker[1], PurgeReport(dry_run=True), AT)


def test_a_scrape_shows_the_record(broker, database_url: str, monkeypatch) -> None:  # noqa: ANN001
    url, client = broker
    upgrade_schema(sa.create_engine(database_url))
    settings = settings_for(database_url, url, monkeypatch)
    empty = scrape(settings)
    assert ("triage_pixels_held", ()) not in empty  # no whole walk yet: no number
    assert by_label(empty, "triage_retention_purged_total", "kind")["pixels"] == 0
    now = datetime.now(UTC)
    record_pass(client, part("", None, 42, 2, at=now), now)
    samples = scrape(settings)
    assert samples[("triage_pixels_held", ())] == 42
    assert 2 * 86400 <= samples[("triage_pixels_oldest_age_seconds", ())] < 2 * 86400 + 600
    assert by_label(samples, "triage_retention_purged_total", "kind") == {
        "pixels": 10, "key_images": 1, "scans": 0, "studies": 0,
    }  # fmt: skip
