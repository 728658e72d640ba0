"""What clinicians and operators read from the ledger: the urgent worklist, studies, results,
history, status counts. Reads only: acknowledging a case is a write (`ledger.worklist`).

`triage urgent`, `studies`, `results` and `status` are thin calls into these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.orders import latest_order_of, not_cancelled, orders
from ledger.statements import results, scans, studies, urgent_cases
from schemas.messages import Priority
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


def studies_named(connection: sa.Connection, key: str) -> list[str]:
    """Ids of the studies `key` names: a study uid, an accession, our study id, or the id of
    one of its scans."""
    of_scan = sa.select(scans.c.study_id).where(scans.c.id == key)
    query = sa.select(studies.c.id).where(
        sa.or_(
            studies.c.study_uid == key,
            studies.c.accession == key,
            studies.c.id == key,
            studies.c.id.in_(of_scan),
        )
    )
    return list(connection.execute(query).scalars())


def _slice_counts() -> sa.Subquery:
    return (
        sa.select(scans.c.study_id, sa.func.count().label("slices"))
        .group_by(scans.c.study_id)
        .subquery()
    )


def _worklist_filter(include_acknowledged: bool, acknowledged_only: bool) -> list[Any]:
    if acknowledged_only:
        return [urgent_cases.c.acknowledged_at.is_not(None)]
    if not include_acknowledged:
        return [urgent_cases.c.acknowledged_at.is_(None)]
    return []


def _open_cases(include_acknowledged: bool, acknowledged_only: bool) -> sa.Select:
    """SELECT the worklist's cases with these choices (their studies joined, cancelled
    orders left out), no columns yet."""
    return (
        sa.select()
        .select_from(urgent_cases)
        .join(studies, studies.c.id == urgent_cases.c.study_id)
        .where(
            *_worklist_filter(include_acknowledged, acknowledged_only),
            not_cancelled(studies.c.accession),
        )
    )


MOST_URGENT_FIRST = (
    (studies.c.priority == Priority.stat.value).desc(),
    urgent_cases.c.p2.desc(),
    urgent_cases.c.classified_at,
    urgent_cases.c.scan_id,
)


def worklist_size(
    engine: Engine, include_acknowledged: bool = False, acknowledged_only: bool = False
) -> int:
    """How many entries `worklist` with these choices has (without a limit)."""
    query = _open_cases(include_acknowledged, acknowledged_only).add_columns(sa.func.count())
    with engine.begin() as connection:
        return connection.execute(query).scalar_one()


def _chosen_keys(
    include_acknowledged: bool, acknowledged_only: bool, limit: int, offset: int
) -> sa.Subquery:
    """The scan ids of the cases a page of `worklist` lists, and how many there are in all
    (a window count: one pass over the open cases, on the narrow columns the order needs)."""
    return (
        _open_cases(include_acknowledged, acknowledged_only)
        .add_columns(urgent_cases.c.scan_id, sa.func.count().over().label("total"))
        .order_by(*MOST_URGENT_FIRST)
        .limit(limit)
        .offset(offset or None)
        .subquery()
    )


def _entry_columns() -> tuple[sa.ColumnElement[Any], ...]:
    """What a worklist entry shows (its study's slice count read per entry)."""
    of_study = scans.alias("of_study")
    slices = (
        sa.select(sa.func.count())
        .where(of_study.c.study_id == studies.c.id)
        .correlate(studies)
        .scalar_subquery()
    )
    return (
        studies.c.study_uid,
        sa.func.coalesce(studies.c.accession, scans.c.accession).label("accession"),
        urgent_cases.c.p2,
        slices.label("slices"),
        urgent_cases.c.scan_id,
        urgent_cases.c.study_id,
        studies.c.received_at,
        urgent_cases.c.classified_at,
        urgent_cases.c.escalated_at,
        urgent_cases.c.notified_at,
        urgent_cases.c.acknowledged_at,
        urgent_cases.c.acknowledged_by,
        urgent_cases.c.model_version,
        studies.c.priority,
    )


def _worklist_with_total(
    engine: Engine,
    include_acknowledged: bool,
    acknowledged_only: bool,
    limit: int | None,
    offset: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """The chosen entries in full and the count of all (None when the page is past the end).
    One statement; with a limit, full rows and slice counts are read for that page only."""
    if limit is None and not offset:
        query = _open_cases(include_acknowledged, acknowledged_only).add_columns(
            *_entry_columns(), sa.literal(None).label("total")
        )
    else:
        chosen = _chosen_keys(include_acknowledged, acknowledged_only, limit, offset)
        query = (
            sa.select(*_entry_columns(), chosen.c.total)
            .select_from(chosen)
            .join(urgent_cases, urgent_cases.c.scan_id == chosen.c.scan_id)
            .join(studies, studies.c.id == urgent_cases.c.study_id)
        )
    query = query.join(scans, scans.c.id == urgent_cases.c.scan_id).order_by(*MOST_URGENT_FIRST)
    now = utcnow()
    cases = fetch_rows(engine, query)
    totals = [row.pop("total") for row in cases]
    for row in cases:
        row["acknowledged"] = row["acknowledged_at"] is not None
        row["waited_s"] = ((row["acknowledged_at"] or now) - row["received_at"]).total_seconds()
    if limit is None and not offset:
        return cases, len(cases)
    return cases, totals[0] if totals else None


def worklist(
    engine: Engine,
    include_acknowledged: bool = False,
    acknowledged_only: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Urgent studies, most urgent first (stat before routine, then highest study P(class 2),
    then longest waiting): one entry per exam with its most suspicious slice (`scan_id`);
    `limit` of them from `offset` when given. A study whose order is cancelled is not listed."""
    return _worklist_with_total(engine, include_acknowledged, acknowledged_only, limit, offset)[0]


def worklist_page(
    engine: Engine, acknowledged_only: bool = False, page: int = 1, per_page: int = 100
) -> tuple[list[dict[str, Any]], int]:
    """One page of the worklist (most urgent first) and how many entries it has in all."""
    offset = (max(page, 1) - 1) * per_page
    cases, total = _worklist_with_total(engine, False, acknowledged_only, per_page, offset)
    if total is None:  # past the last page (or none at all): count on their own
        total = 0 if page == 1 else worklist_size(engine, acknowledged_only=acknowledged_only)
    return cases, total


def worklist_version(engine: Engine) -> str:
    """A short text that changes whenever the worklist does (a case added, re-decided or
    acknowledged, an order that cancels a study or moves it ahead): what the live page polls
    cheaply before it re-reads the list."""
    query = sa.select(
        sa.func.count(),
        sa.func.count(urgent_cases.c.acknowledged_at),
        sa.func.max(urgent_cases.c.classified_at),
        sa.func.max(urgent_cases.c.acknowledged_at),
        sa.select(sa.func.max(orders.c.id)).scalar_subquery(),
    ).select_from(urgent_cases)
    with engine.begin() as connection:
        row = connection.execute(query).one()
    return "|".join(str(value) for value in row)


def list_studies(engine: Engine, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every study with its decision (p2, urgent and predicted are null until it is decided)
    and its order's state (`order_control` NW/XO/CA/OC and `order_note`, the reason a
    cancelled one gave; null without an order), oldest first; `since` keeps those received
    or decided since then."""
    counts = _slice_counts()
    query = (
        sa.select(
            studies.c.study_uid,
            studies.c.accession,
            studies.c.status,
            counts.c.slices,
            studies.c.p2,
            studies.c.urgent,
            studies.c.predicted,
            studies.c.model_version,
            studies.c.classified_at,
            studies.c.received_at,
            studies.c.top_scan_id,
            studies.c.id.label("study_id"),
            studies.c.priority,
            orders.c.order_control,
            orders.c.cancel_reason.label("order_note"),
        )
        .join(counts, counts.c.study_id == studies.c.id)
        .outerjoin(orders, latest_order_of(studies.c.accession))
        .order_by(studies.c.received_at, studies.c.id)
    )
    if since is not None:
        moment = since.astimezone(UTC)
        query = query.where(
            sa.or_(studies.c.received_at >= moment, studies.c.classified_at >= moment)
        )
    return fetch_rows(engine, query)


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
    """Everything the ledger knows about one scan (no pixels) and its study's decision and
    worklist entry, or None."""
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
            studies.c.status.label("study_status"),
            studies.c.p2.label("study_p2"),
            studies.c.urgent.label("study_urgent"),
            urgent_cases.c.escalated_at,
            urgent_cases.c.notified_at,
            urgent_cases.c.acknowledged_at,
        )
        .outerjoin(results, results.c.scan_id == scans.c.id)
        .outerjoin(studies, studies.c.id == scans.c.study_id)
        .outerjoin(urgent_cases, urgent_cases.c.study_id == scans.c.study_id)
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
