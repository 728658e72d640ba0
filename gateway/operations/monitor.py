"""What is waiting where: queue depths from the broker, ages of waiting scans from the ledger.

Used by `triage stats` (a table, or JSON for scripts and dashboards). The two views answer
different questions: the broker says how many jobs are in each Redis list; the ledger says how
long the oldest scan behind each queue has been waiting, which is what a clinician cares about
(see `ledger/backlog.py` for what each queue's ledger count means).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway.broker.server import broker_url, queue_depths, redis_client
from ledger.backlog import ledger_backlog
from ledger.database import engine_for
from ledger.deliveries import waiting_by_channel
from schemas.queues import ALL_QUEUES
from schemas.settings import Settings
from schemas.tables import CHANNELS


@dataclass(frozen=True)
class QueueStats:
    """One queue: jobs in the broker, scans waiting in the ledger, and the oldest one's age."""

    name: str
    broker_depth: int
    waiting: int
    oldest_waiting_seconds: float | None


@dataclass(frozen=True)
class Snapshot:
    """The whole system at one moment."""

    taken_at: datetime
    queues: list[QueueStats]
    processing: int
    failed: int
    open_urgent_cases: int
    deliveries_waiting: dict[str, int]  # pending outbox rows per channel
    contradicting: int = 0  # instances refused: their patient contradicted their study's

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["taken_at"] = self.taken_at.isoformat()
        return data


def take_snapshot(settings: Settings) -> Snapshot:
    """Ask the broker and the ledger named by `settings` (the embedded ones by default)."""
    now = datetime.now(UTC)
    depths = queue_depths(redis_client(broker_url(settings)))
    engine = engine_for(settings.resolved_database_url)
    try:
        backlog = ledger_backlog(engine, now)
        waiting = waiting_by_channel(engine)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as error:
        raise RuntimeError(
            f"cannot read the ledger at {engine.url.render_as_string(hide_password=True)} "
            f"({type(error.orig).__name__}); run `triage db upgrade` first"
        ) from None
    queues = [QueueStats(queue, depths[queue], *backlog.waiting[queue]) for queue in ALL_QUEUES]
    return Snapshot(
        taken_at=now,
        queues=queues,
        processing=backlog.processing,
        failed=backlog.failed,
        open_urgent_cases=backlog.open_urgent_cases,
        deliveries_waiting={channel: waiting.get(channel, 0) for channel in CHANNELS},
        contradicting=backlog.contradicting,
    )
