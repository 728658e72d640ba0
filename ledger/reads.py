"""What clinicians and operators read from the ledger: the urgent worklist, results, history.

`triage urgent`, `results`, `status` and `ack` are thin calls into these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.statements import results, scans, urgent_cases
from schemas.tables import as_utc, utcnow


def fetch_rows(engine: Engine, query: sa.Select) -> list[dict[str, Any]]:
    """Rows as dicts, timestamps in UTC."""
    with engine.begin() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = as_utc(value)
    return rows


def acknowledge(engine: Engine, scan_id: str) -> datetime | None:
    """Mark an urgent case reviewed; returns when it was (first) acknowledged, None if unknown."""
    with engine.begin() as connection:
        connection.execute(
            urgent_cases.update()
            .where(urgent_cases.c.scan_id == scan_id, urgent_cases.c.acknowledged_at.is_(None))
            .values(acknowledged_at=utcnow())
        )
        moment = connection.execute(
            sa.select(urgent_cases.c.acknowledged_at).where(urgent_cases.c.scan_id == scan_id)
        ).scalar()
    return as_utc(moment)


def worklist(engine: Engine, include_acknowledged: bool = False) -> list[dict[str, Any]]:
    """Urgent cases, most urgent first (highest P(class 2), then longest waiting)."""
    query = (
        sa.select(urgent_cases, scans.c.accession, scans.c.received_at)
        .join(scans, scans.c.id == urgent_cases.c.scan_id)
        .order_by(urgent_cases.c.p2.desc(), urgent_cases.c.classified_at, urgent_cases.c.scan_id)
    )
    if not include_acknowledged:
        query = query.where(urgent_cases.c.acknowledged_at.is_(None))
    now = utcnow()
    cases = []
    for row in fetch_rows(engine, query):
        row["acknowledged"] = row["acknowledged_at"] is not None
        row["waited_s"] = ((row["acknowledged_at"] or now) - row["received_at"]).total_seconds()
        cases.append(row)
    return cases


def list_results(engine: Engine, since: datetime | None = None) -> list[dict[str, Any]]:
    """One entry per classified scan, oldest first."""
    query = (
        sa.select(results, scans.c.status, scans.c.accession, scans.c.priority)
        .join(scans, scans.c.id == results.c.scan_id)
        .order_by(results.c.classified_at, results.c.scan_id)
    )
    if since is not None:
        query = query.where(results.c.classified_at >= since.astimezone(UTC))
    return fetch_rows(engine, query)


def history(engine: Engine, scan_id: str) -> dict[str, Any] | None:
    """Everything the ledger knows about one scan (no pixels), or None."""
    query = (
        sa.select(
            scans,
            results.c.predicted,
            results.c.p0,
            results.c.p1,
            results.c.p2,
            results.c.urgent,
            results.c.model_version,
            results.c.classified_at,
            urgent_cases.c.escalated_at,
            urgent_cases.c.notified_at,
            urgent_cases.c.acknowledged_at,
        )
        .outerjoin(results, results.c.scan_id == scans.c.id)
        .outerjoin(urgent_cases, urgent_cases.c.scan_id == scans.c.id)
        .where(scans.c.id == scan_id)
    )
    found = fetch_rows(engine, query)
    return found[0] if found else None


def status_counts(engine: Engine, scan_ids: Iterable[str] | None = None) -> dict[str, int]:
    query = sa.select(scans.c.status, sa.func.count()).group_by(scans.c.status)
    if scan_ids is not None:
        query = query.where(scans.c.id.in_(list(scan_ids)))
    with engine.begin() as connection:
        return {status: count for status, count in connection.execute(query)}
