"""A scan's life in the ledger: received (`queued`), claimed (`processing`), `done` or `failed`.

Writes are set-based (one statement per batch, one transaction per step) so that a batch of
scans costs a few round trips, and idempotent (status-guarded updates, inserts that keep the
first row), so that a job delivered twice leaves one result: the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from imaging.canonical import SCAN_SIZE
from imaging.identity import DicomIdentity
from ledger.bulk import insert_rows
from ledger.deliveries import Routing
from ledger.statements import chunks, models, results, scan_pixels, scans, upsert_into
from ledger.studies import Opened, StudyRef, decide_ready_in, open_studies, own_study_uid
from schemas.messages import Escalation, check_priority
from schemas.model_card import ModelCard
from schemas.tables import utcnow

SCAN_BYTES = SCAN_SIZE * SCAN_SIZE

_registered: set[tuple[str, str]] = set()  # (database URL, model version) this process wrote


@dataclass(frozen=True)
class NewScan:
    """A decoded scan about to enter the ledger, with its study and DICOM identity if known.

    Without `study`, the scan is a study of its own."""

    scan_id: str
    pixels: bytes  # 4,096 bytes: the canonical 64x64 uint8 scan
    accession: str | None
    source: str | None
    study: StudyRef | None = None
    identity: DicomIdentity | None = None


@dataclass(frozen=True)
class Admitted:
    """What `add_scans` recorded: new scan ids (queued or held, in input order); for
    instances received before (same SOPInstanceUID), input index -> the existing scan id;
    for instances refused because they contradict their study, input index -> the reason."""

    new: list[str]
    held: list[str]
    repeated: dict[int, str]
    contradicting: dict[int, str] = field(default_factory=dict)
    made_receiving: frozenset[str] = frozenset()  # study ids this call made `receiving`


@dataclass(frozen=True)
class Claim:
    """The scans a job may classify now (id -> pixels) and those that ran out of attempts."""

    pixels: dict[str, bytes]
    exhausted: list[str]


@dataclass(frozen=True)
class ScoredScan:
    """One classified scan: softmax, the model's predicted class and its urgent flag, and what
    the model saw (`imaging.statistics`: mean intensity and contrast, for drift)."""

    scan_id: str
    probabilities: tuple[float, float, float]
    predicted: int
    urgent: bool
    mean_intensity: float | None = None
    contrast: float | None = None


@dataclass(frozen=True)
class Recorded:
    """When a job's results were written, and the scans that got one (they were `processing`)."""

    classified_at: datetime
    scan_ids: list[str]


# -- intake --------------------------------------------------------------------------------


def add_scans(
    engine: Engine, new_scans: Sequence[NewScan], priority: str, hold: bool = False
) -> Admitted:
    """Record scans and their pixels with their studies, all in one transaction.

    Scans go in `queued`, or `held` while their study is `receiving` (`hold`: a DICOM
    association adds to it, and the study closes when idle). An instance whose SOPInstanceUID
    the ledger already holds is not added again: `repeated` names the scan it already is.
    One whose patient contradicts its study's is not added (`contradicting`: the reason).
    """
    priority = check_priority(priority)
    received_at = utcnow()
    with engine.begin() as connection:
        repeated = _received_before(connection, new_scans)
        fresh = [index for index in range(len(new_scans)) if index not in repeated]
        refs = [_study_of(new_scans[index]) for index in fresh]
        opened = open_studies(connection, refs, priority, hold) if fresh else Opened({}, {})
        contradicting = {fresh[at]: reason for at, reason in opened.contradicting.items()}
        taken = [
            (new_scans[index], ref)
            for index, ref in zip(fresh, refs, strict=True)
            if index not in contradicting
        ]
        rows = [
            _scan_row(scan, opened.studies[ref.uid], priority.value, received_at)
            for scan, ref in taken
        ]
        insert_rows(connection, scans, rows)
        insert_rows(
            connection,
            scan_pixels,
            [{"scan_id": scan.scan_id, "pixels": scan.pixels} for scan, _ref in taken],
        )
    held = [row["id"] for row in rows if row["status"] == "held"]
    return Admitted(
        [row["id"] for row in rows], held, repeated, contradicting, opened.made_receiving
    )


def _study_of(scan: NewScan) -> StudyRef:
    """The study a new scan names, or a study of its own."""
    return scan.study or StudyRef(own_study_uid(scan.scan_id), scan.accession)


def _received_before(connection: Connection, new_scans: Sequence[NewScan]) -> dict[int, str]:
    """Input index -> existing scan id, for instances whose SOPInstanceUID is known (in the
    ledger, or earlier in this call)."""
    sop_of = {
        index: scan.identity.sop_uid
        for index, scan in enumerate(new_scans)
        if scan.identity is not None and scan.identity.sop_uid
    }
    known: dict[str, str] = {}
    for chunk in chunks(sorted(set(sop_of.values()))):
        query = sa.select(scans.c.sop_uid, scans.c.id).where(scans.c.sop_uid.in_(chunk))
        known.update(connection.execute(query).all())
    repeated: dict[int, str] = {}
    for index, sop in sop_of.items():
        if sop in known:
            repeated[index] = known[sop]
        else:
            known[sop] = new_scans[index].scan_id
    return repeated


def _scan_row(
    scan: NewScan, study: tuple[str, str], priority: str, received_at: datetime
) -> dict[str, Any]:
    study_id, study_status = study
    identity = scan.identity
    return {
        "id": scan.scan_id,
        "accession": scan.accession,
        "source": scan.source,
        "priority": priority,
        "status": "held" if study_status == "receiving" else "queued",
        "received_at": received_at,
        "attempts": 0,
        "study_id": study_id,
        "series_uid": identity.series_uid if identity else None,
        "sop_uid": identity.sop_uid if identity else None,
        "modality": identity.modality if identity else None,
        "patient_id": identity.patient_id if identity else None,
        "patient_issuer": identity.patient_issuer if identity else None,
        "instance_number": identity.instance_number if identity else None,
        "slice_position": identity.slice_position if identity else None,
    }


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
    with engine.begin() as connection:
        recorded = _record_in(connection, scored, model_version, model_path, urgent_threshold, card)
    _registered.add((str(engine.url), model_version))
    return recorded


@dataclass(frozen=True)
class ModelRecord:
    """The model a job was classified by, as the ledger registers it."""

    version: str
    path: str
    urgent_threshold: float
    card: ModelCard


def record_and_decide(
    engine: Engine,
    scan_ids: Sequence[str],
    scored: Sequence[ScoredScan],
    corrupt: Sequence[str],
    model: ModelRecord,
    routing: Routing | None = None,
) -> tuple[Recorded, list[Escalation]]:
    """A job's end in one transaction: `corrupt` scans failed, the `scored` results recorded
    (as `record_results`), then every study of `scan_ids` whose slices are now all finished
    decided with its outbox rows (`ledger.studies.decide_ready_in`); returns the results and
    the escalations of the urgent studies. No reader sees results without their decision."""
    card = model.card.model_dump(mode="json")
    with engine.begin() as connection:
        if corrupt:
            _fail(connection, corrupt, f"stored pixels are not {SCAN_BYTES} bytes")
        recorded = _record_in(
            connection, scored, model.version, model.path, model.urgent_threshold, card
        )
        escalations = decide_ready_in(connection, scan_ids, model.card, model.version, routing)
    _registered.add((str(engine.url), model.version))
    return recorded, escalations


def _record_in(
    connection: Connection,
    scored: Sequence[ScoredScan],
    model_version: str,
    model_path: str,
    urgent_threshold: float,
    card: dict[str, Any],
) -> Recorded:
    """`record_results` in the caller's transaction (the caller notes the registration)."""
    classified_at = utcnow()
    by_id = {item.scan_id: item for item in scored}
    if (str(connection.engine.url), model_version) not in _registered:
        register = upsert_into(connection, models).values(
            version=model_version,
            path=model_path,
            urgent_threshold=urgent_threshold,
            registered_at=classified_at,
            card=card,
        )
        connection.execute(register.on_conflict_do_nothing(index_elements=["version"]))
    recorded: list[str] = []
    for chunk in chunks(list(by_id)):
        finish = (
            scans.update()
            .where(scans.c.id.in_(chunk), scans.c.status == "processing")
            .values(status="done", error=None)
            .returning(scans.c.id)
        )
        recorded += connection.execute(finish).scalars().all()
    # a scan gets its result in the transaction that makes it `done`, never again
    rows = [_result_row(by_id[sid], model_version, classified_at) for sid in recorded]
    insert_rows(connection, results, rows)
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
        "mean_intensity": item.mean_intensity,
        "contrast": item.contrast,
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
