"""The audit trail: who did or saw what, on which study, when and from where.

`record` inserts one row in the caller's transaction, so an action and its audit row commit
or roll back together. Nothing here (or anywhere in the application) updates or deletes a row.
Rows name studies by our own id; `events` can select by any key that names a study.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.reads import fetch_rows, studies_named
from ledger.statements import audit_events, studies
from schemas.tables import utcnow

MAX_DETAIL = 1000  # characters of detail kept per row


def record(
    connection: Connection,
    who: str,
    action: str,
    study_id: str | None = None,
    address: str | None = None,
    detail: str | None = None,
) -> None:
    """Insert one audit row in the caller's transaction."""
    connection.execute(
        audit_events.insert().values(
            at=utcnow(),
            who=who[:128],
            action=action[:32],
            study_id=study_id,
            address=(address or None) and address[:64],
            detail=None if detail is None else detail[:MAX_DETAIL],
        )
    )


def record_alone(engine: Engine, who: str, action: str, **fields: Any) -> None:  # noqa: ANN401
    """One audit row in a transaction of its own (a failed login: nothing else happens)."""
    with engine.begin() as connection:
        record(connection, who, action, **fields)


def events(
    engine: Engine,
    since: datetime | None = None,
    study_key: str | None = None,
    limit: int = 10_000,
) -> list[dict[str, Any]]:
    """Audit rows oldest first, with the study's uid; `since` and `study_key` narrow them."""
    query = (
        sa.select(audit_events, studies.c.study_uid)
        .outerjoin(studies, studies.c.id == audit_events.c.study_id)
        .order_by(audit_events.c.at, audit_events.c.id)
        .limit(limit)
    )
    if since is not None:
        query = query.where(audit_events.c.at >= since.astimezone(UTC))
    if study_key is not None:
        with engine.begin() as connection:
            named = studies_named(connection, study_key)
        query = query.where(audit_events.c.study_id.in_(named))
    return fetch_rows(engine, query)
