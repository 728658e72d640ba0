"""What the web page shows of studies: one study with everything about it, and pages of all.

`study_view` reads a study and writes the audit row of that view in one transaction, so no
view of a study page or study API goes unrecorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger import audit
from ledger.reads import fetch_rows
from ledger.statements import deliveries, findings, models, results, scans, studies, urgent_cases
from schemas.tables import as_utc

STUDY_COLUMNS = (
    studies.c.id,
    studies.c.study_uid,
    studies.c.accession,
    studies.c.patient_id,
    studies.c.patient_name,
    studies.c.study_date,
    studies.c.priority,
    studies.c.status,
    studies.c.received_at,
    studies.c.classified_at,
    studies.c.p2,
    studies.c.urgent,
    studies.c.predicted,
    studies.c.model_version,
    studies.c.top_scan_id,
    studies.c.decisions,
    studies.c.saliency.is_not(None).label("has_saliency"),
)


def _timestamps_in_utc(row: dict[str, Any]) -> dict[str, Any]:
    return {key: as_utc(v) if isinstance(v, datetime) else v for key, v in row.items()}


def _rows(connection: Connection, query: sa.Select) -> list[dict[str, Any]]:
    return [_timestamps_in_utc(dict(row._mapping)) for row in connection.execute(query)]


def study_view(
    engine: Engine, study_uid: str, who: str, address: str | None, action: str
) -> dict[str, Any] | None:
    """The study with this uid: its row, every slice's result, its worklist entry, its
    deliveries, its findings (newest first) and its model's card; None if there is none.
    Records `action` by `who` in the audit trail in the same transaction."""
    with engine.begin() as connection:
        found = _rows(connection, sa.select(*STUDY_COLUMNS).where(studies.c.study_uid == study_uid))
        if not found:
            return None
        study = found[0]
        study["slices"] = _rows(connection, _slices(study["id"]))
        listed = _rows(
            connection, sa.select(urgent_cases).where(urgent_cases.c.study_id == study["id"])
        )
        study["worklist"] = listed[0] if listed else None
        study["deliveries"] = _rows(connection, _deliveries(study["id"]))
        study["findings"] = _rows(
            connection,
            sa.select(findings)
            .where(findings.c.study_id == study["id"])
            .order_by(findings.c.at.desc(), findings.c.id.desc()),
        )
        card = connection.execute(
            sa.select(models.c.card).where(models.c.version == study["model_version"])
        ).scalar()
        study["card"] = card or {}
        audit.record(connection, who, action, study["id"], address)
    return study


def _slices(study_id: str) -> sa.Select:
    return (
        sa.select(
            scans.c.id.label("scan_id"),
            scans.c.status,
            scans.c.instance_number,
            results.c.p2,
            results.c.predicted,
            results.c.urgent,
        )
        .outerjoin(results, results.c.scan_id == scans.c.id)
        .where(scans.c.study_id == study_id)
        .order_by(scans.c.slice_position, scans.c.instance_number, scans.c.received_at, scans.c.id)
    )


def _deliveries(study_id: str) -> sa.Select:
    return (
        sa.select(
            deliveries.c.id,
            deliveries.c.decision,
            deliveries.c.channel,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.last_error,
            deliveries.c.next_attempt_at,
            deliveries.c.delivered_at,
        )
        .where(deliveries.c.study_id == study_id)
        .order_by(deliveries.c.decision.desc(), deliveries.c.channel)
    )


@dataclass(frozen=True)
class StudyFilter:
    """Which studies a page of all studies shows."""

    status: str | None = None
    predicted: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def studies_page(
    engine: Engine, chosen: StudyFilter, page: int = 1, per_page: int = 50
) -> tuple[list[dict[str, Any]], int]:
    """One page of studies (newest first) that match `chosen`, and how many match in all."""
    conditions = []
    if chosen.status:
        conditions.append(studies.c.status == chosen.status)
    if chosen.predicted is not None:
        conditions.append(studies.c.predicted == chosen.predicted)
    if chosen.since is not None:
        conditions.append(studies.c.received_at >= chosen.since.astimezone(UTC))
    if chosen.until is not None:
        conditions.append(studies.c.received_at < chosen.until.astimezone(UTC))
    columns = [column for column in STUDY_COLUMNS if column.name != "has_saliency"]
    query = (
        sa.select(*columns, urgent_cases.c.acknowledged_at, urgent_cases.c.acknowledged_by)
        .outerjoin(urgent_cases, urgent_cases.c.study_id == studies.c.id)
        .where(*conditions)
        .order_by(studies.c.received_at.desc(), studies.c.id)
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    )
    total_query = sa.select(sa.func.count()).select_from(studies).where(*conditions)
    with engine.begin() as connection:
        total = connection.execute(total_query).scalar_one()
    return fetch_rows(engine, query), total


def study_id_of(engine: Engine, study_uid: str) -> str | None:
    """Our id of the study with this uid, or None."""
    with engine.begin() as connection:
        query = sa.select(studies.c.id).where(studies.c.study_uid == study_uid)
        return connection.execute(query).scalar()
