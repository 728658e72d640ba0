"""Scans that failed for good, newest first, for the operations page (our ids and reasons)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.reads import fetch_rows
from ledger.statements import scans


def failed_scans(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    query = (
        sa.select(
            scans.c.id, scans.c.study_id, scans.c.attempts, scans.c.error, scans.c.received_at
        )
        .where(scans.c.status == "failed")
        .order_by(scans.c.received_at.desc(), scans.c.id)
        .limit(limit)
    )
    return fetch_rows(engine, query)
