"""What the ledger says is waiting: per queue, how many scans and the oldest one's age.

`triage stats` shows it beside the broker's queue depths (`gateway/operations/monitor.py`):
- `stat`   scans enqueued with priority `stat`, status `queued`
- `scans`  routine scans, status `queued`
- `urgent` class-2 results not yet on the worklist (escalation still on its way)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.orders import not_cancelled
from ledger.statements import scans, studies, urgent_cases
from ledger.worklist import unlisted_urgent
from schemas.messages import Priority
from schemas.queues import QUEUE_OF_PRIORITY, URGENT_QUEUE
from schemas.tables import as_utc


@dataclass(frozen=True)
class LedgerBacklog:
    """Per queue (waiting scans, seconds the oldest has waited) and the ledger's totals."""

    waiting: dict[str, tuple[int, float | None]]
    processing: int
    failed: int
    open_urgent_cases: int
    contradicting: int = 0  # instances refused: their patient contradicted their study's


def ledger_backlog(engine: Engine, now: datetime) -> LedgerBacklog:
    """One read of everything `triage stats` needs from the ledger."""
    queries = {
        QUEUE_OF_PRIORITY[priority]: sa.select(
            sa.func.count(), sa.func.min(scans.c.received_at)
        ).where(scans.c.status == "queued", scans.c.priority == priority.value)
        for priority in Priority
    }
    queries[URGENT_QUEUE] = unlisted_urgent(sa.func.count(), sa.func.min(studies.c.classified_at))
    open_cases = (
        sa.select(sa.func.count())
        .select_from(urgent_cases)
        .join(studies, studies.c.id == urgent_cases.c.study_id)
        .where(urgent_cases.c.acknowledged_at.is_(None), not_cancelled(studies.c.accession))
    )  # what the worklist shows: a cancelled order's study has left it
    with engine.begin() as connection:
        waiting = {}
        for queue, query in queries.items():
            count, oldest = connection.execute(query).one()
            waiting[queue] = (count, _seconds_since(as_utc(oldest), now))
        statuses = dict(
            connection.execute(
                sa.select(scans.c.status, sa.func.count()).group_by(scans.c.status)
            ).all()
        )
        open_count = connection.execute(open_cases).scalar_one()
        refused = connection.execute(sa.select(sa.func.sum(studies.c.contradicting))).scalar()
    return LedgerBacklog(
        waiting,
        statuses.get("processing", 0),
        statuses.get("failed", 0),
        open_count,
        int(refused or 0),
    )


def _seconds_since(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max(0.0, (now - moment).total_seconds())
