"""Which Celery workers are alive and which queues each consumes, and which ones were seen
before and answer no more.

A roll call broadcasts `active_queues` over the broker (Celery's remote control; each worker's
main process answers, even while its pool is busy) and waits ROLL_CALL_TIMEOUT_S for the
replies. Who answered is written to a hash in the broker's Redis (SEEN_KEY: node -> queues and
when last seen), so that a worker that stops answering is listed as gone, by every web process
and after a restart, until FORGET_AFTER_S has passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from celery import Celery

from gateway.broker.server import broker_url, redis_client
from schemas.settings import Settings

ROLL_CALL_TIMEOUT_S = 1.0
SEEN_KEY = "triage:workers:seen"
FORGET_AFTER_S = 24 * 3600.0


@dataclass(frozen=True)
class WorkerSeen:
    """One worker node: the queues it consumes, whether it answered now, when it last did."""

    name: str
    queues: tuple[str, ...]
    alive: bool
    last_seen: datetime


def answering(url: str, timeout: float = ROLL_CALL_TIMEOUT_S) -> dict[str, tuple[str, ...]]:
    """Node name -> the queues it consumes, for every worker that answers within `timeout`."""
    control = Celery("triage-roll-call", broker=url, set_as_current=False)
    try:
        replies = control.control.inspect(timeout=timeout).active_queues() or {}
    finally:
        control.close()
    return {node: tuple(sorted(q["name"] for q in queues)) for node, queues in replies.items()}


def roll_call(settings: Settings, timeout: float = ROLL_CALL_TIMEOUT_S) -> list[WorkerSeen]:
    """The workers answering now and those seen within FORGET_AFTER_S that no longer do:
    alive ones first, then by name."""
    url = broker_url(settings)
    alive = answering(url, timeout)
    now = datetime.now(UTC)
    client = redis_client(url)
    for node, queues in alive.items():
        client.hset(SEEN_KEY, node, json.dumps({"queues": queues, "at": now.isoformat()}))
    workers = []
    for node, text in client.hgetall(SEEN_KEY).items():
        name, seen = node.decode(), json.loads(text)
        last_seen = datetime.fromisoformat(seen["at"])
        if name not in alive and now - last_seen > timedelta(seconds=FORGET_AFTER_S):
            client.hdel(SEEN_KEY, node)
            continue
        workers.append(WorkerSeen(name, tuple(seen["queues"]), name in alive, last_seen))
    return sorted(workers, key=lambda worker: (not worker.alive, worker.name))
