"""What every ledger module shares: the tables' handles, id chunks, dialect upserts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from schemas.tables import (
    ApiToken,
    AuditEvent,
    Delivery,
    Finding,
    ModelVersion,
    Result,
    Scan,
    ScanPixels,
    Study,
    UrgentCase,
    User,
)

scans = Scan.__table__
scan_pixels = ScanPixels.__table__
results = Result.__table__
models = ModelVersion.__table__
studies = Study.__table__
urgent_cases = UrgentCase.__table__
deliveries = Delivery.__table__
users = User.__table__
api_tokens = ApiToken.__table__
audit_events = AuditEvent.__table__
findings = Finding.__table__
ID_CHUNK = 500  # ids per IN (...) list: well under SQLite's bound-parameter limit
T = TypeVar("T")


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
