"""gateway.broker.server against a real Redis: queue depths count every priority list, and
match what Celery really publishes."""

from __future__ import annotations

import pytest
import redis
from kombu.transport.redis import Channel

from gateway.broker.server import queue_depths, redis_client
from schemas.settings import get_settings
from testkit.services import redis_url_with_database

SERVER_DB = 11  # a Redis database of its own, so other tests' queues do not count


@pytest.fixture
def broker(redis_server: str) -> redis.Redis:
    client = redis_client(redis_url_with_database(redis_server, SERVER_DB))
    client.flushdb()
    yield client
    client.flushdb()


def test_queue_depths_count_every_priority_list(broker: redis.Redis) -> None:
    broker.rpush("scans", "a", "b", "c")
    broker.rpush(f"scans{Channel.sep}6", "d")
    broker.rpush(f"stat{Channel.sep}3", "e")
    broker.rpush("unrelated", "f")
    assert queue_depths(broker) == {"stat": 1, "scans": 4, "urgent": 0}


def test_depths_match_what_celery_really_publishes(
    broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.broker.publish import publish_jobs

    kwargs = broker.connection_pool.connection_kwargs
    monkeypatch.setenv("TRIAGE_REDIS_URL", f"redis://{kwargs['host']}:{kwargs['port']}/{SERVER_DB}")
    monkeypatch.setenv("TRIAGE_BATCH_SIZE", "1")
    get_settings.cache_clear()
    assert publish_jobs(["a", "b", "c"], "routine", get_settings()) == 3
    assert publish_jobs(["d"], "stat", get_settings()) == 1
    assert queue_depths(broker) == {"stat": 1, "scans": 3, "urgent": 0}
