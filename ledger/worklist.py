"""The urgent worklist in the ledger: one row per urgent study, written once, paged until the
page is recorded (`notified_at`), and acknowledged by a clinician.

The row is keyed by the study's most suspicious slice (`scan_id`) and names its study. A study
that is decided again (re-opened by a late instance) and is still urgent keeps its row, updated
with the new P(2) and slice, and is not paged again.

`unlisted_urgent` is the one statement of "an urgent study with no worklist row yet" (its
escalation is on its way, or was lost): the worker re-sends them, the reconciler finds lost
ones, `triage stats` counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger import audit
from ledger.reads import studies_named
from ledger.statements import chunks, scans, studies, upsert_into, urgent_cases
from schemas.messages import Escalation
from schemas.tables import as_utc, utcnow


def unlisted_urgent(*columns: Any) -> sa.Select:
    """SELECT `columns` of urgent studies that have no worklist row."""
    return (
        sa.select(*columns)
        .select_from(studies)
        .outerjoin(urgent_cases, urgent_cases.c.study_id == studies.c.id)
        .where(studies.c.urgent.is_(True), urgent_cases.c.scan_id.is_(None))
    )


def _escalation(row: Any) -> Escalation:  # noqa: ANN401 - a result row
    return Escalation(
        scan_id=row.top_scan_id,
        study_id=row.id,
        p2=min(1.0, max(0.0, row.p2)),
        model_version=row.model_version,
        classified_at=as_utc(row.classified_at),
    )


UNLISTED_COLUMNS = (
    studies.c.id,
    studies.c.top_scan_id,
    studies.c.p2,
    studies.c.model_version,
    studies.c.classified_at,
)


def unescalated(engine: Engine, scan_ids: Sequence[str]) -> list[Escalation]:
    """Urgent studies of these scans that have no worklist row yet (to re-send)."""
    escalations: dict[str, Escalation] = {}
    with engine.begin() as connection:
        for chunk in chunks(scan_ids):
            of_scans = sa.select(scans.c.study_id).where(scans.c.id.in_(chunk))
            query = unlisted_urgent(*UNLISTED_COLUMNS).where(studies.c.id.in_(of_scans))
            for row in connection.execute(query):
                escalations[row.id] = _escalation(row)
    return list(escalations.values())


def unlisted_before(engine: Engine, cutoff: datetime, limit: int) -> list[Escalation]:
    """Escalations of urgent studies decided before `cutoff` that are not on the worklist."""
    query = unlisted_urgent(*UNLISTED_COLUMNS).where(studies.c.classified_at < cutoff).limit(limit)
    with engine.begin() as connection:
        return [_escalation(row) for row in connection.execute(query)]


def add_urgent_cases(engine: Engine, escalations: Sequence[Escalation]) -> list[str]:
    """Put urgent studies on the worklist once each, in one transaction; returns the scan ids
    of the rows added (to page). A study already on the list gets its row updated instead."""
    escalated_at = utcnow()
    rows = [
        {
            "scan_id": escalation.scan_id,
            "study_id": escalation.study_id,
            "p2": escalation.p2,
            "model_version": escalation.model_version,
            "classified_at": escalation.classified_at,
            "escalated_at": escalated_at,
        }
        for escalation in escalations
    ]
    added: list[str] = []
    with engine.begin() as connection:
        listed = _listed(connection, [row["study_id"] for row in rows if row["study_id"]])
        for row in rows:
            if row["study_id"] in listed:  # decided again: rare, one statement each
                _update_listed(connection, row)
        for chunk in chunks(rows):
            statement = upsert_into(connection, urgent_cases).values(list(chunk))
            statement = statement.on_conflict_do_nothing()
            # RETURNING, not rowcount: psycopg reports no reliable rowcount for this statement
            added += connection.execute(statement.returning(urgent_cases.c.scan_id)).scalars()
    return added


def _listed(connection: sa.Connection, study_ids: Sequence[str]) -> set[str]:
    """Those of these studies that already have a worklist row."""
    found: set[str] = set()
    for chunk in chunks(study_ids):
        query = sa.select(urgent_cases.c.study_id).where(urgent_cases.c.study_id.in_(chunk))
        found.update(connection.execute(query).scalars())
    return found


def _update_listed(connection: sa.Connection, row: dict[str, Any]) -> None:
    """A study decided again: its existing row takes the new P(2), slice and model."""
    connection.execute(
        urgent_cases.update()
        .where(
            urgent_cases.c.study_id == row["study_id"],
            urgent_cases.c.classified_at < row["classified_at"],
        )
        .values(
            scan_id=row["scan_id"],
            p2=row["p2"],
            model_version=row["model_version"],
            classified_at=row["classified_at"],
        )
    )


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


def acknowledge(engine: Engine, key: str, who: str, address: str | None = None) -> datetime | None:
    """Mark the urgent study that `key` names (study uid, accession or scan id) reviewed by
    `who`, with its audit row in the same transaction; returns when it was (first)
    acknowledged, None if no such study is on the worklist. `triage ack` and the web page
    both call this."""
    with engine.begin() as connection:
        named = studies_named(connection, key)
        listed = urgent_cases.c.study_id.in_(named)
        on_list = connection.execute(sa.select(urgent_cases.c.study_id).where(listed)).scalars()
        on_list = list(on_list)
        if not on_list:
            return None
        connection.execute(
            urgent_cases.update()
            .where(listed, urgent_cases.c.acknowledged_at.is_(None))
            .values(acknowledged_at=utcnow(), acknowledged_by=who)
        )
        for study_id in on_list:
            audit.record(connection, who, "acknowledge", study_id, address)
        moment = connection.execute(
            sa.select(sa.func.min(urgent_cases.c.acknowledged_at)).where(listed)
        ).scalar()
    return as_utc(moment)
