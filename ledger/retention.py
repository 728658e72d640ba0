"""Retention: pixels, and optionally whole studies, leave the ledger once their purpose is over.

Pixels (`scan_pixels`, and the saliency map on the study row: the key image) of a decided study
go `keep_pixels_days` after its (last) decision; results, decisions, worklist rows and
deliveries stay. With `keep_results_days`, a decided study older than that goes whole: its
scans, pixels, results, worklist row and outbox rows, then the study row. The `models` table
is never touched.

A study keeps everything, whatever its age, while it is not decided (receiving, or re-opened
and waiting for slices), while one of its deliveries is not yet sent (`pending`, retries
included), while it is urgent and not yet acknowledged on the worklist (on it, or its
escalation still on the way).

The work is bounded: each transaction looks at one window of at most `batch` rows and deletes
only those, so no lock is held for long and PostgreSQL needs no table rewrite (freed space is
reused after its ordinary autovacuum). The pixel walk goes through `scan_pixels` in key order,
so one pass costs what is still held, not the whole history. The clock is the `now` passed in
(`utcnow` by default), so tests age rows without sleeping. On PostgreSQL the studies of a
window are locked FOR SHARE while their rows go, so a study cannot be re-opened half-purged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.statements import (
    chunks,
    deliveries,
    results,
    scan_pixels,
    scans,
    studies,
    urgent_cases,
)
from ledger.studies import DECIDED, UNFINISHED
from schemas.tables import as_utc, utcnow

BATCH_ROWS = 1000  # rows one transaction looks at (and deletes at most)
ID_WINDOW = 500  # studies a dry run counts per transaction (one IN list)


@dataclass
class PurgeReport:
    """What one pass removed (or, on a dry run, would remove): counts only."""

    dry_run: bool
    max_batches: int | None = None  # transactions the pass may use (None: no bound)
    pixels: int = 0  # scan_pixels rows
    key_images: int = 0  # saliency maps cleared from study rows
    scans: int = 0  # scans removed whole, with their results (keep_results_days)
    studies: int = 0  # study rows removed (keep_results_days)
    batches: int = 0  # transactions used
    finished: bool = True  # False: stopped at max_batches, the next pass goes on
    # the pixel walk: where it began ("" = the first row) and where the next pass resumes it
    # (None: it reached the last row); what the rows it walked still hold (not on a dry run)
    walked_from: str = ""
    resume_after: str | None = None
    pixels_held: int | None = None
    oldest_pixels_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        """Counts and times only (the walk's position is a scan id: left out)."""
        data = asdict(self)
        for key in ("walked_from", "resume_after"):
            data.pop(key)
        data["oldest_pixels_at"] = self.oldest_pixels_at and self.oldest_pixels_at.isoformat()
        return data


class Holdings(NamedTuple):
    """Pixels the ledger holds: how many scans, and when the oldest of them was received."""

    pixels: int
    oldest_received_at: datetime | None

    def plus(self, other: Holdings) -> Holdings:
        moments = [m for m in (self.oldest_received_at, other.oldest_received_at) if m]
        return Holdings(self.pixels + other.pixels, min(moments) if moments else None)


def kept_anyway() -> sa.ColumnElement[bool]:
    """The enclosing study keeps its rows whatever its age: not decided, a delivery not yet
    sent, or urgent and not acknowledged (on the worklist or on its way there)."""
    of_study = deliveries.c.study_id == studies.c.id
    unsent = sa.select(deliveries.c.id).where(of_study, deliveries.c.status == "pending").exists()
    case = urgent_cases.c.study_id == studies.c.id
    acknowledged = (
        sa.select(urgent_cases.c.scan_id)
        .where(case, urgent_cases.c.acknowledged_at.is_not(None))
        .exists()
    )
    open_urgent = sa.and_(studies.c.urgent.is_(True), ~acknowledged)
    return sa.or_(studies.c.status.not_in(DECIDED), unsent, open_urgent)


def expired(cutoff: datetime) -> sa.ColumnElement[bool]:
    """The enclosing study was decided before `cutoff` and nothing keeps it. "Decided" is
    left to `kept_anyway` (a status other than classified or failed keeps a study): a status
    IN here would lead SQLite's planner to walk every decided study from the status index."""
    return sa.and_(studies.c.classified_at < cutoff, ~kept_anyway())


def purge(
    engine: Engine,
    keep_pixels_days: float,
    keep_results_days: float | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    batch: int = BATCH_ROWS,
    max_batches: int | None = None,
    resume_after: str = "",
) -> PurgeReport:
    """One retention pass. `max_batches` bounds it; the rest waits for a pass that resumes
    the pixel walk at the report's `resume_after`."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    now = now or utcnow()
    report = PurgeReport(dry_run=dry_run, max_batches=max_batches)
    pixels = _PixelPass(now - timedelta(days=keep_pixels_days), dry_run, batch, resume_after)
    if keep_results_days is not None:
        cutoff = now - timedelta(days=keep_results_days)
        _purge_studies(engine, cutoff, dry_run, batch, report)
        if dry_run:  # what the study pass would remove is counted there, not again
            pixels = replace(pixels, studies_kept_since=cutoff)
    _purge_pixels(engine, pixels, report)
    return report


def _spend(report: PurgeReport) -> bool:
    """Count one transaction; False (and the report unfinished) once the budget is spent."""
    if report.max_batches is not None and report.batches >= report.max_batches:
        report.finished = False
        return False
    report.batches += 1
    return True


# -- pixels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PixelPass:
    """The pixel walk's terms; `studies_kept_since`: a dry run skips studies decided before it
    (the whole-study pass would remove them and counted their pixels)."""

    cutoff: datetime
    dry_run: bool
    batch: int
    start: str
    studies_kept_since: datetime | None = None


def _purge_pixels(engine: Engine, terms: _PixelPass, report: PurgeReport) -> None:
    """Walk `scan_pixels` in key order from `terms.start`, one window of `batch` rows per
    transaction, until the last row or the budget."""
    report.walked_from = report.resume_after = terms.start
    key_images: set[str] = set()  # a study's slices span windows: each map counts once
    held = Holdings(0, None)
    while _spend(report):
        with engine.begin() as connection:
            window = _pixel_window(connection, report.resume_after or "", terms.batch)
            if window:
                gone, with_map = _expired_pixels(connection, window, terms)
                if not terms.dry_run:
                    _delete_pixels(connection, gone, with_map)
                    held = held.plus(_window_holdings(connection, window[0], window[-1]))
                report.pixels += len(gone)
                key_images |= with_map
                report.key_images = len(key_images)
                report.resume_after = window[-1]
        if len(window) < terms.batch:
            report.resume_after = None
            break
    if not terms.dry_run:
        report.pixels_held, report.oldest_pixels_at = held


def _pixel_window(connection: Connection, after: str, batch: int) -> list[str]:
    """The next `batch` scan ids holding pixels, after `after` in key order."""
    query = (
        sa.select(scan_pixels.c.scan_id)
        .where(scan_pixels.c.scan_id > after)
        .order_by(scan_pixels.c.scan_id)
        .limit(batch)
    )
    return list(connection.execute(query).scalars())


def _expired_pixels(
    connection: Connection, window: list[str], terms: _PixelPass
) -> tuple[list[str], set[str]]:
    """Of the window's scans: those whose pixels may go, and the studies among theirs that
    hold a saliency map. By id lists (one per ID_CHUNK), and "not unfinished" rather than
    "done or failed", so that both databases start from the scans' primary key, never from
    the status index over every finished scan."""
    gone: list[str] = []
    with_map: set[str] = set()
    for chunk in chunks(window):
        query = (
            sa.select(scans.c.id, studies.c.id.label("study_id"), studies.c.saliency.is_not(None))
            .join(studies, studies.c.id == scans.c.study_id)
            .where(scans.c.id.in_(chunk), scans.c.status.not_in(UNFINISHED), expired(terms.cutoff))
        )
        if terms.studies_kept_since is not None:
            query = query.where(studies.c.classified_at >= terms.studies_kept_since)
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(read=True, of=studies)
        rows = connection.execute(query).all()
        gone += [row[0] for row in rows]
        with_map |= {row.study_id for row in rows if row[2]}
    return gone, with_map


def _window_holdings(connection: Connection, first: str, last: str) -> Holdings:
    in_window = sa.and_(scan_pixels.c.scan_id >= first, scan_pixels.c.scan_id <= last)
    return _holdings(connection, in_window)


def _delete_pixels(connection: Connection, scan_ids: list[str], study_ids: set[str]) -> None:
    for chunk in chunks(scan_ids):
        connection.execute(scan_pixels.delete().where(scan_pixels.c.scan_id.in_(chunk)))
    for chunk in chunks(sorted(study_ids)):
        connection.execute(studies.update().where(studies.c.id.in_(chunk)).values(saliency=None))


# -- whole studies (keep_results_days) ---------------------------------------------------------


def _purge_studies(
    engine: Engine,
    cutoff: datetime,
    dry_run: bool,
    batch: int,
    report: PurgeReport,
) -> None:
    """Scans of expired studies `batch` at a time (children first), then the emptied studies."""
    if dry_run:
        _count_expired_studies(engine, cutoff, report)
        return
    while _spend(report):
        with engine.begin() as connection:
            scan_ids = _expired_scans(connection, cutoff, batch)
            if scan_ids:
                report.pixels += _delete_scans(connection, scan_ids)
                report.scans += len(scan_ids)
                continue
            study_ids = _emptied_studies(connection, cutoff, batch)
            _delete_studies(connection, study_ids, report)
        report.studies += len(study_ids)
        if len(study_ids) < batch:
            return


def _locked(connection: Connection, query: sa.Select) -> sa.Select:
    if connection.dialect.name == "postgresql":
        return query.with_for_update(read=True, of=studies)
    return query


def _on_worklist() -> sa.Exists:
    """The enclosing scan is a worklist row's slice: it goes last, with its study, so that the
    study never looks urgent and unlisted half-way."""
    return sa.select(urgent_cases.c.scan_id).where(urgent_cases.c.scan_id == scans.c.id).exists()


def _expired_scans(connection: Connection, cutoff: datetime, batch: int) -> list[str]:
    query = (
        sa.select(scans.c.id)
        .join(studies, studies.c.id == scans.c.study_id)
        .where(expired(cutoff), ~_on_worklist())
        .limit(batch)
    )
    return list(connection.execute(_locked(connection, query)).scalars())


def _emptied_studies(connection: Connection, cutoff: datetime, batch: int) -> list[str]:
    others = sa.select(scans.c.id).where(scans.c.study_id == studies.c.id, ~_on_worklist())
    query = sa.select(studies.c.id).where(expired(cutoff), ~others.exists()).limit(batch)
    return list(connection.execute(_locked(connection, query)).scalars())


def _delete_scans(connection: Connection, scan_ids: list[str]) -> int:
    """Delete these scans, their pixels and results; returns the pixel rows deleted."""
    pixels = 0
    for chunk in chunks(scan_ids):
        pixels += connection.execute(
            scan_pixels.delete().where(scan_pixels.c.scan_id.in_(chunk))
        ).rowcount
        connection.execute(results.delete().where(results.c.scan_id.in_(chunk)))
        connection.execute(scans.delete().where(scans.c.id.in_(chunk)))
    return pixels


def _delete_studies(connection: Connection, study_ids: list[str], report: PurgeReport) -> None:
    """Delete these studies with their outbox rows, worklist rows and those rows' slices."""
    for chunk in chunks(study_ids):
        listed = sa.select(urgent_cases.c.scan_id).where(urgent_cases.c.study_id.in_(chunk))
        last_slices = list(connection.execute(listed).scalars())
        connection.execute(deliveries.delete().where(deliveries.c.study_id.in_(chunk)))
        connection.execute(urgent_cases.delete().where(urgent_cases.c.study_id.in_(chunk)))
        report.pixels += _delete_scans(connection, last_slices)
        report.scans += len(last_slices)
        connection.execute(studies.delete().where(studies.c.id.in_(chunk)))


def _count_expired_studies(engine: Engine, cutoff: datetime, report: PurgeReport) -> None:
    """Dry run: walk the expired studies in id order, counting their scans and pixels."""
    after = ""
    while _spend(report):
        with engine.begin() as connection:
            ids = _expired_study_window(connection, after, cutoff)
            if not ids:
                return
            after = ids[-1]
            of_these = scans.c.study_id.in_(ids)
            report.scans += connection.execute(
                sa.select(sa.func.count()).select_from(scans).where(of_these)
            ).scalar_one()
            report.pixels += connection.execute(
                sa.select(sa.func.count())
                .select_from(scan_pixels)
                .join(scans, scans.c.id == scan_pixels.c.scan_id)
                .where(of_these)
            ).scalar_one()
        report.studies += len(ids)
        if len(ids) < ID_WINDOW:
            return


def _expired_study_window(connection: Connection, after: str, cutoff: datetime) -> list[str]:
    query = (
        sa.select(studies.c.id)
        .where(studies.c.id > after, expired(cutoff))
        .order_by(studies.c.id)
        .limit(ID_WINDOW)
    )
    return list(connection.execute(query).scalars())


# -- what is held --------------------------------------------------------------------------


def holdings(engine: Engine) -> Holdings:
    """How many scans hold pixels now, and when the oldest of them was received (one read
    over every pixel row: for `triage stats`, not for every scrape)."""
    with engine.begin() as connection:
        return _holdings(connection, sa.true())


def _holdings(connection: Connection, where: sa.ColumnElement[bool]) -> Holdings:
    query = (
        sa.select(sa.func.count(), sa.func.min(scans.c.received_at))
        .select_from(scan_pixels.join(scans, scans.c.id == scan_pixels.c.scan_id))
        .where(where)
    )
    count, oldest = connection.execute(query).one()
    return Holdings(count, as_utc(oldest))
