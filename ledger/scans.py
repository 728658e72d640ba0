"""A scan's life in the ledger: received (`queued`), claimed (`processing`), `done` or `failed`.

Writes are set-based (one statement per batch, one transaction per step) so that a batch of
scans costs a few round trips, and idempotent (status-guarded updates, inserts that keep the
first row), so that a job delivered twice leaves one result: the first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from schemas.messages import check_priority
from schemas.tables import ModelVersion, Result, Scan, ScanPixels, utcnow

scans = Scan.__table__
scan_pixels = ScanPixels.__table__
results = Result.__table__
models = ModelVersion.__table__
ID_CHUNK = 500  # ids per IN (...) list: well under SQLite's bound-parameter limit
T = TypeVar("T")
_registered: set[tuple[str, str]] = set()  # (database URL, model version) this process wrote


@dataclass(frozen=True)
class NewScan:
    """A decoded scan about to enter the ledger."""

    scan_id: str
    pixels: bytes  # 4,096 bytes: the canonical 64x64 uint8 scan
    accession: str | None
    source: str | None


@dataclass(frozen=True)
class Claim:
    """The scans a job may classify now (id -> pixels) and those that ran out of attempts."""

    pixels: dict[str, bytes]
    exhausted: list[str]


@dataclass(frozen=True)
class ScoredScan:
    """One classified scan: softmax, the model's predicted class and its urgent flag."""

    scan_id: str
    probabilities: tuple[float, float, float]
    predicted: int
    urgent: bool


@dataclass(frozen=True)
class Recorded:
    """When a job's results were written, and the scans that got one (they were `processing`)."""

    classified_at: datetime
    scan_ids: list[str]


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """`items` in slices of ID_CHUNK (one statement each)."""
    for start in range(0, len(items), ID_CHUNK):
        yield items[start : start + ID_CHUNK]


def upsert_into(connection: Connection, table: sa.Table):  # noqa: ANN202 - dialect Insert
    """INSERT with ON CONFLICT support for the connection's dialect."""
    name = connection.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise ValueError(f"unsupported database dialect {name!r}: use sqlite or postgresql")
    return insert(table)


# -- intake --------------------------------------------------------------------------------


def add_scans(engine: Engine, new_scans: Sequence[NewScan], priority: str) -> None:
    """Record scans as `queued` and their pixels, all in one transaction (bulk inserts)."""
    priority = check_priority(priority).value
    received_at = utcnow()
    rows = [
        {
            "id": scan.scan_id,
            "accession": scan.accession,
            "source": scan.source,
            "priority": priority,
            "status": "queued",
            "received_at": received_at,
            "attempts": 0,
        }
        for scan in new_scans
    ]
    if rows:
        pixels = [{"scan_id": scan.scan_id, "pixels": scan.pixels} for scan in new_scans]
        with engine.begin() as connection:
            connection.execute(scans.insert(), rows)
            connection.execute(scan_pixels.insert(), pixels)


def mark_published(engine: Engine, scan_ids: Sequence[str], at: datetime | None = None) -> None:
    """Record when these scans' jobs were (re-)published: `at`, or now."""
    at = at or utcnow()
    with engine.begin() as connection:
        for chunk in chunks(scan_ids):
            connection.execute(scans.update().where(scans.c.id.in_(chunk)).values(published_at=at))


# -- classification ------------------------------------------------------------------------


class Redelivered(Exception):
    """A batch some of whose unfinished scans were started before (its worker was lost)."""


def claim(
    engine: Engine, scan_ids: Sequence[str], max_attempts: int, refuse_redelivered: bool = False
) -> Claim:
    """Mark unfinished scans `processing` (attempts + 1); those past `max_attempts` fail.

    Scans already `done` or `failed` are left alone, which makes a repeated job harmless.
    With `refuse_redelivered`, a batch holding a scan started before raises `Redelivered`
    and claims nothing (the transaction rolls back, attempts unchanged): one transaction
    does both the check and the claim.
    The status update touches only the small `scans` rows; the pixels are read beside it.
    """
    claimed = (
        scans.update()
        .where(scans.c.id.in_(scan_ids), scans.c.status.in_(("queued", "processing")))
        .values(status="processing", attempts=scans.c.attempts + 1, started_at=utcnow())
        .returning(scans.c.id, scans.c.attempts)
    )
    with engine.begin() as connection:
        rows = connection.execute(claimed).all()
        if refuse_redelivered and any(row.attempts > 1 for row in rows):
            raise Redelivered(f"{len(scan_ids)} scans, some started before")
        exhausted = [row.id for row in rows if row.attempts > max_attempts]
        if exhausted:
            _fail(
                connection,
                exhausted,
                f"gave up after {max_attempts} attempts (its worker was lost each time)",
            )
        runnable = [row.id for row in rows if row.attempts <= max_attempts]
        pixels = dict.fromkeys(runnable, b"")  # a scan without a pixel row fails as corrupt
        for chunk in chunks(runnable):
            query = sa.select(scan_pixels.c.scan_id, scan_pixels.c.pixels).where(
                scan_pixels.c.scan_id.in_(chunk)
            )
            pixels.update(connection.execute(query).all())
    return Claim(pixels=pixels, exhausted=exhausted)


def record_results(
    engine: Engine,
    scored: Sequence[ScoredScan],
    model_version: str,
    model_path: str,
    urgent_threshold: float,
    card: dict[str, Any],
) -> Recorded:
    """Record one result per scan still `processing`, mark it `done`, register the model.

    Results are written once per model decision: a scan already `done` keeps its first result
    (a late duplicate or a redelivery under a newer model is dropped), a `failed` or `queued`
    scan gets none. One transaction; the model row is written once per process and database.
    """
    classified_at = utcnow()
    by_id = {item.scan_id: item for item in scored}
    registration = (str(engine.url), model_version)
    recorded: list[str] = []
    with engine.begin() as connection:
        if registration not in _registered:
            register = upsert_into(connection, models).values(
                version=model_version,
                path=model_path,
                urgent_threshold=urgent_threshold,
                registered_at=classified_at,
                card=card,
            )
            connection.execute(register.on_conflict_do_nothing(index_elements=["version"]))
        for chunk in chunks(list(by_id)):
            finish = (
                scans.update()
                .where(scans.c.id.in_(chunk), scans.c.status == "processing")
                .values(status="done", error=None)
                .returning(scans.c.id)
            )
            recorded += connection.execute(finish).scalars().all()
        if recorded:
            rows = [_result_row(by_id[sid], model_version, classified_at) for sid in recorded]
            insert = upsert_into(connection, results).on_conflict_do_nothing(
                index_elements=["scan_id"]
            )
            connection.execute(insert, rows)
    _registered.add(registration)
    return Recorded(classified_at, recorded)


def _result_row(item: ScoredScan, model_version: str, classified_at: datetime) -> dict[str, Any]:
    return {
        "scan_id": item.scan_id,
        "predicted": item.predicted,
        "p0": item.probabilities[0],
        "p1": item.probabilities[1],
        "p2": item.probabilities[2],
        "urgent": item.urgent,
        "model_version": model_version,
        "classified_at": classified_at,
    }


def release(engine: Engine, scan_ids: Sequence[str], reason: str) -> list[str]:
    """Leave unfinished scans waiting in `queued` with the reason; a claim is un-counted.

    For failures that are not the scan's (no model published yet, database or broker down):
    a `processing` scan goes back to `queued` with attempts - 1 (the claim did not count
    against it), a `queued` one just gets the reason; both wait to be retried or re-sent by
    the reconciler instead of failing. Returns the ids that were `processing`.
    """
    uncounted = sa.case((scans.c.attempts > 0, scans.c.attempts - 1), else_=0)
    released: list[str] = []
    with engine.begin() as connection:
        for chunk in chunks(scan_ids):
            back = (
                scans.update()
                .where(scans.c.id.in_(chunk), scans.c.status == "processing")
                .values(status="queued", attempts=uncounted, error=reason[:2000])
                .returning(scans.c.id)
            )
            moved = connection.execute(back).scalars().all()
            waiting = scans.c.id.in_(sorted(set(chunk) - set(moved)))
            connection.execute(
                scans.update()
                .where(waiting, scans.c.status == "queued")
                .values(error=reason[:2000])
            )
            released += moved
    return released


def mark_failed(engine: Engine, scan_ids: Sequence[str], reason: str) -> None:
    """Terminal status for unfinished scans, with the reason (done scans are kept)."""
    with engine.begin() as connection:
        _fail(connection, scan_ids, reason)


def _fail(connection: Connection, scan_ids: Sequence[str], reason: str) -> None:
    connection.execute(
        scans.update()
        .where(scans.c.id.in_(scan_ids), scans.c.status.in_(("queued", "processing")))
        .values(status="failed", error=reason[:2000])
    )
