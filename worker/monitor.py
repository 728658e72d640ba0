"""What is waiting where: queue depths from the broker, ages of waiting scans from the ledger.

Used by `triage stats` (a table, or JSON for scripts and dashboards). The two views answer
different questions: the broker says how many jobs are in each Redis list; the ledger says how
long the oldest scan behind each queue has been waiting, which is what a clinician cares about.

- `stat`   scans enqueued with priority `stat`, status `queued`
- `scans`  routine scans, status `queued`
- `urgent` class-2 results not yet on the worklist (escalation still on its way)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import sqlalchemy as sa

from schemas.settings import Settings
from schemas.tables import Result, Scan, UrgentCase
from worker.app import ROUTINE_QUEUE, STAT_QUEUE, URGENT_QUEUE

QUEUES = (STAT_QUEUE, ROUTINE_QUEUE, URGENT_QUEUE)
# kombu's Redis transport keeps a queue as a list named after it, plus one list per
# non-zero priority step, named queue + "\x06\x16" + step
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = range(1, 10)


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

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["taken_at"] = self.taken_at.isoformat()
        return data


def redis_client(url: str) -> redis.Redis:
    """A client for a broker URL, including kombu's `redis+socket://` form for Unix sockets."""
    for prefix in ("redis+socket://", "socket://"):
        if url.startswith(prefix):
            return redis.Redis(unix_socket_path=url[len(prefix) :], socket_timeout=5)
    return redis.Redis.from_url(url, socket_timeout=5)


def queue_depths(client: redis.Redis, queues: tuple[str, ...] = QUEUES) -> dict[str, int]:
    """Messages waiting in each queue's Redis lists (reserved, unacked ones are not counted)."""
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
            for step in PRIORITY_STEPS:
                pipe.llen(f"{queue}{PRIORITY_SEPARATOR}{step}")
        lengths = pipe.execute()
    per_queue = 1 + len(PRIORITY_STEPS)
    return {
        queue: sum(lengths[index * per_queue : (index + 1) * per_queue])
        for index, queue in enumerate(queues)
    }


def ledger_backlog(connection: sa.Connection, now: datetime) -> dict[str, tuple[int, float | None]]:
    """Per queue: how many scans wait, and how many seconds the oldest has waited."""
    waiting = {
        STAT_QUEUE: sa.select(sa.func.count(), sa.func.min(Scan.received_at)).where(
            Scan.status == "queued", Scan.priority == "stat"
        ),
        ROUTINE_QUEUE: sa.select(sa.func.count(), sa.func.min(Scan.received_at)).where(
            Scan.status == "queued", Scan.priority == "routine"
        ),
        URGENT_QUEUE: sa.select(sa.func.count(), sa.func.min(Result.classified_at))
        .outerjoin(UrgentCase, UrgentCase.scan_id == Result.scan_id)
        .where(Result.urgent.is_(True), UrgentCase.scan_id.is_(None)),
    }
    backlog = {}
    for queue, query in waiting.items():
        count, oldest = connection.execute(query).one()
        backlog[queue] = (count, _seconds_since(oldest, now))
    return backlog


def take_snapshot(settings: Settings) -> Snapshot:
    """Ask the broker and the ledger named by `settings` (the embedded ones by default)."""
    from worker.broker import broker_url

    now = datetime.now(UTC)
    depths = queue_depths(redis_client(broker_url(settings)))
    engine = sa.create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            backlog = ledger_backlog(connection, now)
            statuses = dict(
                connection.execute(
                    sa.select(Scan.status, sa.func.count()).group_by(Scan.status)
                ).all()
            )
            open_cases = connection.execute(
                sa.select(sa.func.count()).where(UrgentCase.acknowledged_at.is_(None))
            ).scalar_one()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as error:
        raise RuntimeError(
            f"cannot read the ledger at {engine.url.render_as_string(hide_password=True)} "
            f"({type(error.orig).__name__}); run `triage db upgrade` first"
        ) from None
    finally:
        engine.dispose()
    queues = [QueueStats(queue, depths[queue], *backlog[queue]) for queue in QUEUES]
    return Snapshot(
        taken_at=now,
        queues=queues,
        processing=statuses.get("processing", 0),
        failed=statuses.get("failed", 0),
        open_urgent_cases=open_cases,
    )


def _seconds_since(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; the ledger stores UTC
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (now - moment).total_seconds())
