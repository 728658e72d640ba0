"""A study's life in the ledger: receiving -> queued (closed) -> classified (decided).

A study is an exam: the scans that share a DICOM StudyInstanceUID, or a study of our own
(`triage:<key>`) for other input. Slices that arrive while their study is `receiving` are
`held`; closing the study (idle for `study_idle_seconds`, or at the end of a `triage enqueue`
call) queues them. When the last slice of a closed study is classified, the study is decided
once by the card's study rule; an instance that arrives after that re-opens the study, and the
decision is made again over all its slices (its worklist entry is updated, not paged again).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.bulk import insert_new_rows, update_rows
from ledger.deliveries import Routing, add_for_decisions, release_key_images
from ledger.statements import chunks, results, scans, studies
from schemas.messages import Escalation, Priority
from schemas.model_card import ModelCard, StudyDecision
from schemas.tables import as_utc, utcnow

UNFINISHED = ("held", "queued", "processing")
DECIDED = ("classified", "failed")


@dataclass(frozen=True)
class StudyRef:
    """Who a new scan's study is: its uid, and the accession and patient it came with."""

    uid: str
    accession: str | None = None
    patient_id: str | None = None
    patient_issuer: str | None = None
    patient_name: str | None = None
    study_date: str | None = None
    patient_modules: str | None = None  # DICOM JSON, imaging/patient_modules.py


@dataclass(frozen=True)
class Opened:
    """What `open_studies` found: uid -> (study id, status) of the studies that take the new
    slices, and ref index -> why a ref was refused (it contradicts the study it names)."""

    studies: dict[str, tuple[str, str]]
    contradicting: dict[int, str]
    made_receiving: frozenset[str] = frozenset()  # ids this call made `receiving` (hold)


OWN_STUDY_PREFIX = "triage:"


def own_study_uid(key: str) -> str:
    """The uid of a study of our own (non-DICOM input, or DICOM without StudyInstanceUID)."""
    return f"{OWN_STUDY_PREFIX}{key}"[:128]


def open_studies(
    connection: Connection, refs: Sequence[StudyRef], priority: Priority, hold: bool
) -> Opened:
    """Make sure a row exists for each study; refuse refs that contradict theirs.

    New studies are `receiving` when `hold` (a DICOM association adds to them), else
    `queued`, and keep the patient of their first ref (and its patient and study modules,
    copied into every object we send back). A ref whose PatientID, or (where both
    are present) IssuerOfPatientID or AccessionNumber, differs from its study's is refused
    and counted on the study (`contradicting`): one study, one patient. An existing study
    that takes a slice and was decided or closed is re-opened the same way; one still
    `receiving` stays so (its new slices are held with the rest). `stat` wins.
    """
    now = utcnow()
    status = "receiving" if hold else "queued"
    by_uid: dict[str, StudyRef] = {}
    for ref in refs:
        by_uid.setdefault(ref.uid, ref)  # the first ref of a new study names its patient
    rows = [_new_study_row(by_uid[uid], priority, status, now, hold) for uid in sorted(by_uid)]
    made = {row["study_uid"]: row["id"] for row in rows}  # uid -> the id a new row would get
    insert_new_rows(connection, studies, rows, unique="study_uid")
    found = _study_rows(connection, list(by_uid))
    contradicting = {
        index: reason
        for index, ref in enumerate(refs)
        if (reason := contradiction(ref, found[ref.uid])) is not None
    }
    _count_contradicting(connection, [found[refs[index].uid].id for index in contradicting])
    taking = {ref.uid for index, ref in enumerate(refs) if index not in contradicting}
    existing = {
        uid: (found[uid].id, found[uid].status) for uid in taking if found[uid].id != made[uid]
    }
    _reopen(connection, existing, status, priority, now)  # new rows are as they should be
    opened = {
        uid: (found[uid].id, "receiving" if found[uid].status == "receiving" else status)
        for uid in taking
    }
    made_receiving = frozenset(
        found[uid].id
        for uid in taking
        if hold and (found[uid].status != "receiving" or found[uid].id == made[uid])
    )
    return Opened(opened, contradicting, made_receiving)


def _study_rows(connection: Connection, uids: Sequence[str]) -> dict[str, sa.Row]:
    """uid -> (id, status, patient and accession) of these studies' rows, locked.

    PostgreSQL: the rows are locked (FOR UPDATE) in id order, the order `decide_ready` and
    `close_idle` lock in, before their status is read, so a study cannot be closed or decided
    between that read and this transaction's held slices (SQLite: BEGIN IMMEDIATE).
    """
    ids: list[str] = []
    for chunk in chunks(sorted(uids)):
        query = sa.select(studies.c.id).where(studies.c.study_uid.in_(chunk))
        ids += connection.execute(query).scalars()
    found: dict[str, sa.Row] = {}
    for chunk in chunks(sorted(ids)):
        query = (
            sa.select(
                studies.c.id,
                studies.c.study_uid,
                studies.c.status,
                studies.c.patient_id,
                studies.c.patient_issuer,
                studies.c.accession,
            )
            .where(studies.c.id.in_(chunk))
            .order_by(studies.c.id)
            .with_for_update(of=studies)
        )
        found.update({row.study_uid: row for row in connection.execute(query)})
    return found


def contradiction(ref: StudyRef, study: sa.Row) -> str | None:
    """Why `ref` may not join `study` (names the element, never its value), or None.

    Compared where both sides hold a value; studies of our own are not DICOM and not compared.
    """
    if ref.uid.startswith(OWN_STUDY_PREFIX):
        return None
    pairs = (
        ("PatientID", ref.patient_id, study.patient_id),
        ("IssuerOfPatientID", ref.patient_issuer, study.patient_issuer),
        ("AccessionNumber", ref.accession, study.accession),
    )
    for element, ours, theirs in pairs:
        if ours and theirs and ours != theirs:
            return f"{element} contradicts its study's; refused, not merged"
    return None


def _count_contradicting(connection: Connection, study_ids: Sequence[str]) -> None:
    """Add each refused instance to its study's `contradicting` count."""
    for study_id, count in sorted(Counter(study_ids).items()):
        connection.execute(
            studies.update()
            .where(studies.c.id == study_id)
            .values(contradicting=studies.c.contradicting + count)
        )


def _new_study_row(
    ref: StudyRef, priority: Priority, status: str, now: datetime, hold: bool
) -> dict[str, object]:
    import uuid

    return {
        "id": str(uuid.uuid4()),
        "study_uid": ref.uid,
        "accession": ref.accession,
        "patient_id": ref.patient_id,
        "patient_issuer": ref.patient_issuer,
        "patient_name": ref.patient_name,
        "study_date": ref.study_date,
        "patient_modules": ref.patient_modules,
        "priority": priority.value,
        "status": status,
        "received_at": now,
        "last_instance_at": now,
        "closed_at": None if hold else now,
        "decisions": 0,
        "contradicting": 0,
    }


def _reopen(
    connection: Connection,
    found: dict[str, tuple[str, str]],
    status: str,
    priority: Priority,
    now: datetime,
) -> None:
    """New slices for existing studies: the idle timer restarts, a closed study re-opens."""
    ids = [sid for sid, _state in found.values()]
    for chunk in chunks(ids):
        connection.execute(
            studies.update().where(studies.c.id.in_(chunk)).values(last_instance_at=now)
        )
        closed = studies.c.status != "receiving"
        values: dict[str, object] = {"status": status}
        if status == "queued":
            values["closed_at"] = now
        connection.execute(studies.update().where(studies.c.id.in_(chunk), closed).values(values))
        if priority is Priority.stat:
            connection.execute(
                studies.update().where(studies.c.id.in_(chunk)).values(priority=priority.value)
            )


@dataclass(frozen=True)
class Closed:
    """Studies closed by one call, their slices to publish by priority, and how many of
    those were held in a study no longer receiving (requeued)."""

    studies: int
    to_publish: dict[Priority, list[str]]
    requeued: int = 0


def close_idle(engine: Engine, idle_before: datetime, limit: int = 1000) -> Closed:
    """Close `receiving` studies with no instance since `idle_before`: their held slices are
    queued, to be published by the caller; so is any slice left `held` in a study that is no
    longer receiving (a ledger written before the study rows were locked).

    PostgreSQL: the idle studies are locked (FOR UPDATE SKIP LOCKED): one an intake is adding
    to right now is not idle, and is left for the next round instead of waited on.
    """
    now = utcnow()
    to_publish: dict[Priority, list[str]] = {priority: [] for priority in Priority}
    query = (
        sa.select(studies.c.id, studies.c.priority)
        .where(studies.c.status == "receiving", studies.c.last_instance_at < idle_before)
        .order_by(studies.c.last_instance_at)
        .limit(limit)
        .with_for_update(of=studies, skip_locked=True)
    )
    with engine.begin() as connection:
        idle = connection.execute(query).all()
        _queue_held(connection, idle, now, to_publish)
        stranded = _requeue_stranded(connection)
    for scan_id, priority in stranded:
        to_publish[Priority(priority)].append(scan_id)
    return Closed(len(idle), to_publish, len(stranded))


def close_studies(engine: Engine, study_ids: Sequence[str]) -> Closed:
    """Close these studies if still `receiving` (the end of a `triage enqueue` call that held
    its studies' slices while it streamed them in); their held slices are queued, to be
    published by the caller. Locked in id order, as everywhere."""
    now = utcnow()
    to_publish: dict[Priority, list[str]] = {priority: [] for priority in Priority}
    closed = 0
    with engine.begin() as connection:
        for chunk in chunks(sorted(study_ids)):
            query = (
                sa.select(studies.c.id, studies.c.priority)
                .where(studies.c.id.in_(chunk), studies.c.status == "receiving")
                .order_by(studies.c.id)
                .with_for_update(of=studies)
            )
            rows = connection.execute(query).all()
            closed += len(rows)
            _queue_held(connection, rows, now, to_publish)
    return Closed(closed, to_publish)


def _queue_held(
    connection: Connection, rows: Sequence[sa.Row], now: datetime, to_publish: dict
) -> None:
    """Close these (id, priority) studies and queue their held slices into `to_publish`."""
    for chunk in chunks(rows):
        connection.execute(
            studies.update()
            .where(studies.c.id.in_([row.id for row in chunk]), studies.c.status == "receiving")
            .values(status="queued", closed_at=now)
        )
    for row in rows:
        held = (
            scans.update()
            .where(scans.c.study_id == row.id, scans.c.status == "held")
            .values(status="queued")
            .returning(scans.c.id)
        )
        to_publish[Priority(row.priority)] += connection.execute(held).scalars().all()


def _requeue_stranded(connection: Connection) -> list[tuple[str, str]]:
    """Queue slices `held` in a study that is not receiving (nothing would ever queue them);
    returns (scan id, priority) of each."""
    not_receiving = sa.select(studies.c.id).where(studies.c.status != "receiving")
    stranded = (
        scans.update()
        .where(scans.c.status == "held", scans.c.study_id.in_(not_receiving))
        .values(status="queued")
        .returning(scans.c.id, scans.c.priority)
    )
    return [(row.id, row.priority) for row in connection.execute(stranded)]


# -- the study decision ----------------------------------------------------------------------


def undecided_studies(*columns: object) -> sa.Select:
    """SELECT `columns` of studies without a decision yet (receiving, or closed and waiting
    for their slices or for the job that finished them to decide)."""
    return sa.select(*columns).select_from(studies).where(studies.c.status.not_in(DECIDED))


def decide_ready(
    engine: Engine,
    scan_ids: Sequence[str],
    card: ModelCard,
    model_version: str,
    routing: Routing | None = None,
) -> list[Escalation]:
    """`decide_ready_in` in a transaction of its own (the reconciler's, and tests')."""
    with engine.begin() as connection:
        return decide_ready_in(connection, scan_ids, card, model_version, routing)


def decide_ready_in(
    connection: Connection,
    scan_ids: Sequence[str],
    card: ModelCard,
    model_version: str,
    routing: Routing | None = None,
) -> list[Escalation]:
    """Decide every closed study of these scans whose slices are all finished; returns the
    escalations of the urgent ones (one per study, its most suspicious slice). The outbox rows
    of each decision (`routing`) are written in the caller's transaction.

    Set-based: a few statements per job, not per study. The study rows are locked first
    (PostgreSQL `FOR UPDATE`, in id order; SQLite writes one at a time) and only then are
    their unfinished slices counted, so two jobs finishing the last slices of one study
    decide it once.
    """
    decisions = _ready_studies(connection, scan_ids)
    if not decisions:
        return []
    now = utcnow()
    decided = _decide_all(card, _slice_scores(connection, list(decisions)), decisions)
    _record_decisions(connection, decided, model_version, now)
    if routing is not None:
        outbox = [
            (sid, decisions[sid] + 1, result[0].urgent)
            for sid, result in decided.items()
            if result is not None
        ]
        add_for_decisions(connection, outbox, routing)
    return [
        Escalation(
            scan_id=top_scan,
            study_id=sid,
            p2=min(1.0, max(0.0, decision.p2)),
            model_version=model_version,
            classified_at=now,
        )
        for sid, result in decided.items()
        if result is not None and result[0].urgent
        for decision, top_scan in [result]
    ]


def _ready_studies(connection: Connection, scan_ids: Sequence[str]) -> dict[str, int]:
    """Study id -> decisions so far, of these scans' closed, undecided studies whose slices
    are all finished.

    PostgreSQL: the study rows are locked first (FOR UPDATE, in id order, in one statement),
    then their unfinished slices counted by a second statement, which sees what the jobs that
    held those locks committed. SQLite: one statement (BEGIN IMMEDIATE serializes writers).
    """
    if connection.dialect.name != "postgresql":
        found: dict[str, int] = {}
        for chunk in chunks(scan_ids):
            query = _queued_studies_of(scans.c.id.in_(chunk)).where(~_has_unfinished_slice())
            found.update(connection.execute(query).all())
        return found
    from sqlalchemy.dialects.postgresql import ARRAY

    these = scans.c.id == sa.any_(sa.bindparam("scan_ids", list(scan_ids), ARRAY(sa.String)))
    query = _queued_studies_of(these).order_by(studies.c.id).with_for_update(of=studies)
    found = dict(connection.execute(query).all())
    for study_id in _with_unfinished(connection, list(found)):
        found.pop(study_id)
    return found


def _queued_studies_of(these_scans: sa.ColumnElement[bool]) -> sa.Select:
    """(id, decisions) of the closed, undecided studies of the scans `these_scans` selects."""
    of_these = sa.select(scans.c.study_id).where(these_scans, scans.c.study_id.is_not(None))
    return sa.select(studies.c.id, studies.c.decisions).where(
        studies.c.id.in_(of_these), studies.c.status == "queued"
    )


def _has_unfinished_slice() -> sa.Exists:
    """The study of the enclosing row has a slice held, queued or processing."""
    return (
        sa.select(scans.c.id)
        .where(scans.c.study_id == studies.c.id, scans.c.status.in_(UNFINISHED))
        .exists()
    )


def _with_unfinished(connection: Connection, study_ids: Sequence[str]) -> set[str]:
    """Those of these studies with a slice still held, queued or processing."""
    busy: set[str] = set()
    for chunk in chunks(study_ids):
        query = sa.select(studies.c.id).where(studies.c.id.in_(chunk), _has_unfinished_slice())
        busy.update(connection.execute(query).scalars())
    return busy


def _slice_scores(connection: Connection, study_ids: Sequence[str]) -> dict[str, list]:
    """Study id -> its classified slices (scan id, p0, p1, p2), in instance order."""
    found: dict[str, list] = {}
    for chunk in chunks(study_ids):
        query = (
            sa.select(scans.c.study_id, results.c.scan_id, results.c.p0, results.c.p1, results.c.p2)
            .join(scans, scans.c.id == results.c.scan_id)
            .where(scans.c.study_id.in_(chunk))
            .order_by(scans.c.instance_number, scans.c.received_at, results.c.scan_id)
        )
        for row in connection.execute(query):
            found.setdefault(row.study_id, []).append(row)
    return found


def _decide_all(
    card: ModelCard, slices: dict[str, list], study_ids: Sequence[str]
) -> dict[str, tuple[StudyDecision, str] | None]:
    """Each study's decision and top scan (None when no slice was classified); studies of one
    slice, the common case, are decided together."""
    single = [sid for sid in study_ids if len(slices.get(sid, [])) == 1]
    rows = [slices[sid][0] for sid in single]
    decided: dict[str, tuple[StudyDecision, str] | None] = {}
    if single:
        at_once = card.decide_one_slice_studies(np.array([[r.p0, r.p1, r.p2] for r in rows]))
        decided = {sid: (d, r.scan_id) for sid, d, r in zip(single, at_once, rows, strict=True)}
    for sid in study_ids:
        if sid not in decided:
            decided[sid] = _decide(card, slices.get(sid, []))
    return decided


def _decide(card: ModelCard, rows: list) -> tuple[StudyDecision, str] | None:
    """The decision over a study's classified slices and its top scan; None if none was."""
    if not rows:  # every slice failed: nothing to decide on
        return None
    decision = card.decide_study(np.array([[row.p0, row.p1, row.p2] for row in rows]))
    return decision, rows[decision.top_slice].scan_id


def _record_decisions(
    connection: Connection,
    decided: dict[str, tuple[StudyDecision, str] | None],
    model_version: str,
    now: datetime,
) -> None:
    """One statement for the decided studies, one for those whose slices all failed."""
    failed = [{"id": sid} for sid, result in decided.items() if result is None]
    update_rows(connection, studies, "id", failed, {"status": "failed", "classified_at": now})
    rows = [
        {
            "id": sid,
            "p2": decision.p2,
            "urgent": decision.urgent,
            "predicted": decision.predicted,
            "top_scan_id": top_scan,
        }
        for sid, result in decided.items()
        if result is not None
        for decision, top_scan in [result]
    ]
    same_for_all = {
        "status": "classified",
        "classified_at": now,
        "model_version": model_version,
        "decisions": studies.c.decisions + 1,
        "saliency": None,
    }
    update_rows(connection, studies, "id", rows, same_for_all)


def undecided_before(engine: Engine, cutoff: datetime, limit: int) -> list[str]:
    """Closed studies, idle since `cutoff`, whose slices are all finished but which have no
    decision (their last slices were failed outside a job, e.g. by the reconciler, or their
    results predate the decision): one scan id of each."""
    unfinished = _has_unfinished_slice()
    one_scan = (
        sa.select(sa.func.min(scans.c.id)).where(scans.c.study_id == studies.c.id).scalar_subquery()
    )
    query = (
        sa.select(one_scan)
        .where(studies.c.status == "queued", studies.c.closed_at < cutoff, ~unfinished)
        .limit(limit)
    )
    with engine.begin() as connection:
        return [sid for sid in connection.execute(query).scalars() if sid is not None]


def study_row(engine: Engine, study_id: str) -> dict[str, object] | None:
    """One study's row (no patient data beyond what the ledger holds), or None."""
    with engine.begin() as connection:
        row = connection.execute(sa.select(studies).where(studies.c.id == study_id)).first()
    if row is None:
        return None
    found = dict(row._mapping)
    for key, value in found.items():
        if isinstance(value, datetime):
            found[key] = as_utc(value)
    return found


def store_saliency(engine: Engine, study_id: str, top_scan_id: str, saliency: bytes) -> bool:
    """Keep the saliency map of a study's most suspicious slice (for the key image), if that
    slice is still the study's top one; its waiting key images become due in the same
    transaction. True if stored."""
    with engine.begin() as connection:
        stored = connection.execute(
            studies.update()
            .where(studies.c.id == study_id, studies.c.top_scan_id == top_scan_id)
            .values(saliency=saliency)
        )
        if stored.rowcount:
            release_key_images(connection, study_id)
    return bool(stored.rowcount)
