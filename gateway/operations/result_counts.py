"""Results per model version for every metrics scrape, at a cost that does not grow with the
ledger: the rows older than a settling lag are counted once and kept, and a scrape counts
only the rows classified since the last settled moment (the `results.classified_at` index).

A result's `classified_at` is taken when its transaction starts, so a row may commit a
little after a later one; rows younger than SETTLE_S are therefore counted afresh on each
scrape and become part of the kept count only once they are older than that. The first
scrape of a process counts everything once. The kept count never shrinks, so retention
removing old results (TRIAGE_KEEP_RESULTS_DAYS) does not make the counter go down.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.statements import results

SETTLE_S = 300  # far longer than a results transaction stays open


class ResultCounts:
    """Per model version: results counted so far (kept) plus the unsettled tail."""

    def __init__(self) -> None:
        self._settled: Counter[str] = Counter()
        self._settled_until: datetime | None = None  # rows before this are in _settled
        self._lock = threading.Lock()  # scrapes may run in parallel server threads

    def read(self, engine: Engine, now: datetime) -> dict[str, int]:
        """Results per model version as of `now` (one or two index range reads)."""
        edge = now - timedelta(seconds=SETTLE_S)
        with self._lock, engine.connect() as connection:
            if self._settled_until is None or edge > self._settled_until:
                newly = _counts(connection, self._settled_until, edge)
                self._settled.update(newly)
                self._settled_until = edge
            tail = _counts(connection, self._settled_until, None)
            return dict(self._settled + tail)


def _counts(connection: sa.Connection, since: datetime | None, until: datetime | None) -> Counter:
    query = sa.select(results.c.model_version, sa.func.count()).group_by(results.c.model_version)
    if since is not None:
        query = query.where(results.c.classified_at >= since)
    if until is not None:
        query = query.where(results.c.classified_at < until)
    return Counter(dict(connection.execute(query).all()))
