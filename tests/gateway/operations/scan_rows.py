"""Scan rows written straight into a ledger, for tests that need a given mix of states."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from schemas.tables import Scan


def insert_scans(
    connection: sa.Connection, rows: Sequence[tuple[str, str, str, float]], now: datetime
) -> None:
    """Insert scans given as (id, priority, status, age in seconds before `now`)."""
    connection.execute(
        sa.insert(Scan),
        [
            {
                "id": scan_id,
                "priority": priority,
                "status": status,
                "received_at": now - timedelta(seconds=age),
            }
            for scan_id, priority, status, age in rows
        ],
    )
