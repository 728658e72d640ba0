"""The urgent worklist in the ledger: one row per class-2 scan, written once, paged once.

`unlisted_urgent` is the one statement of "an urgent result with no worklist row yet"
(its escalation is on its way, or was lost): the worker re-sends them, the reconciler finds
lost ones, `triage stats` counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.scans import chunks, results, upsert_into
from schemas.messages import Escalation
from schemas.tables import UrgentCase, as_utc, utcnow

urgent_cases = UrgentCase.__table__


def unlisted_urgent(*columns: Any) -> sa.Select:
    """SELECT `columns` of urgent results that have no worklist row."""
    return (
        sa.select(*columns)
        .select_from(results)
        .outerjoin(urgent_cases, urgent_cases.c.scan_id == results.c.scan_id)
        .where(results.c.urgent.is_(True), urgent_cases.c.scan_id.is_(None))
    )


def unescalated(engine: Engine, scan_ids: Sequence[str]) -> list[Escalation]:
    """Urgent results among these scans that have no worklist row yet (to re-send)."""
    columns = (results.c.scan_id, results.c.p2, results.c.model_version, results.c.classified_at)
    escalations: list[Escalation] = []
    with engine.begin() as connection:
        for chunk in chunks(scan_ids):
            query = unlisted_urgent(*columns).where(results.c.scan_id.in_(chunk))
            escalations += [
                Escalation(
                    scan_id=row.scan_id,
                    p2=row.p2,
                    model_version=row.model_version,
                    classified_at=as_utc(row.classified_at),
                )
                for row in connection.execute(query)
            ]
    return escalations


def unlisted_before(engine: Engine, cutoff: datetime, limit: int) -> list[str]:
    """Ids of urgent results classified before `cutoff` that are not on the worklist."""
    query = unlisted_urgent(results.c.scan_id).where(results.c.classified_at < cutoff).limit(limit)
    with engine.begin() as connection:
        return list(connection.execute(query).scalars())


def add_urgent_cases(engine: Engine, escalations: Sequence[Escalation]) -> list[str]:
    """Put class-2 scans on the worklist once each, in one transaction; returns the ids added."""
    escalated_at = utcnow()
    rows = [
        {
            "scan_id": escalation.scan_id,
            "p2": escalation.p2,
            "model_version": escalation.model_version,
            "classified_at": escalation.classified_at,
            "escalated_at": escalated_at,
        }
        for escalation in escalations
    ]
    added: list[str] = []
    with engine.begin() as connection:
        for chunk in chunks(rows):
            statement = upsert_into(connection, urgent_cases).values(list(chunk))
            statement = statement.on_conflict_do_nothing(index_elements=["scan_id"])
            # RETURNING, not rowcount: psycopg reports no reliable rowcount for this statement
            added += connection.execute(statement.returning(urgent_cases.c.scan_id)).scalars()
    return added


def mark_notified(engine: Engine, scan_ids: Sequence[str]) -> None:
    """Record that these worklist cases were paged."""
    now = utcnow()
    with engine.begin() as connection:
        for chunk in chunks(scan_ids):
            connection.execute(
                urgent_cases.update()
                .where(urgent_cases.c.scan_id.in_(chunk), urgent_cases.c.notified_at.is_(None))
                .values(notified_at=now)
            )


def unpaged_cases(engine: Engine, escalated_before: datetime, limit: int) -> list[str]:
    """Worklist cases put on the list before `escalated_before` whose page never went out."""
    query = (
        sa.select(urgent_cases.c.scan_id)
        .where(
            urgent_cases.c.notified_at.is_(None),
            urgent_cases.c.escalated_at < escalated_before,
        )
        .order_by(urgent_cases.c.escalated_at)
        .limit(limit)
    )
    with engine.begin() as connection:
        return list(connection.execute(query).scalars())
