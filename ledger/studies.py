"""A study's life in the ledger: receiving -> queued (closed) -> classified (decided).

A study is an exam: the scans that share a DICOM StudyInstanceUID, or a study of our own
(`triage:<key>`) for other input. Slices that arrive while their study is `receiving` are
`held`; closing the study (idle for `study_idle_seconds`, or at the end of a `triage enqueue`
call) queues them. When the last slice of a closed study is classified, the study is decided
once by the card's study rule; an instance that arrives after that re-opens the study, and the
decision is made again over all its slices (its worklist entry is updated, not paged again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.deliveries import Routing, add_for_decision
from ledger.statements import chunks, results, scans, studies, upsert_into
from schemas.messages import Escalation, Priority
from schemas.model_card import ModelCard
from schemas.tables import as_utc, utcnow

UNFINISHED = ("held", "queued", "processing")


@dataclass(frozen=True)
class StudyRef:
    """Who a new scan's study is: its uid, and the accession and patient id it came with."""

    uid: str
    accession: str | None = None
    patient_id: str | None = None


def own_study_uid(key: str) -> str:
    """The uid of a study of our own (non-DICOM input, or DICOM without StudyInstanceUID)."""
    return f"triage:{key}"[:128]


def open_studies(
    connection: Connection, refs: Sequence[StudyRef], priority: Priority, hold: bool
) -> dict[str, tuple[str, str]]:
    """Make sure a row exists for each study; returns uid -> (study id, status).

    New studies are `receiving` when `hold` (a DICOM association adds to them), else
    `queued`. An existing study that was decided or closed is re-opened the same way; one
    still `receiving` stays so (its new slices are held with the rest). `stat` wins.
    """
    now = utcnow()
    status = "receiving" if hold else "queued"
    by_uid = {ref.uid: ref for ref in refs}
    for chunk in chunks(list(by_uid)):
        rows = [_new_study_row(by_uid[uid], priority, status, now, hold) for uid in chunk]
        connection.execute(
            upsert_into(connection, studies).on_conflict_do_nothing(index_elements=["study_uid"]),
            rows,
        )
    found: dict[str, tuple[str, str]] = {}
    for chunk in chunks(list(by_uid)):
        query = sa.select(studies.c.id, studies.c.study_uid, studies.c.status).where(
            studies.c.study_uid.in_(chunk)
        )
        found.update({row.study_uid: (row.id, row.status) for row in connection.execute(query)})
    _reopen(connection, found, status, priority, now)
    return {
        uid: (sid, "receiving" if state == "receiving" else status)
        for uid, (sid, state) in found.items()
    }


def _new_study_row(
    ref: StudyRef, priority: Priority, status: str, now: datetime, hold: bool
) -> dict[str, object]:
    import uuid

    return {
        "id": str(uuid.uuid4()),
        "study_uid": ref.uid,
        "accession": ref.accession,
        "patient_id": ref.patient_id,
        "priority": priority.value,
        "status": status,
        "received_at": now,
        "last_instance_at": now,
        "closed_at": None if hold else now,
        "decisions": 0,
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
    """Studies closed by one call, and their slices to publish, by priority."""

    studies: int
    to_publish: dict[Priority, list[str]]


def close_idle(engine: Engine, idle_before: datetime, limit: int = 1000) -> Closed:
    """Close `receiving` studies with no instance since `idle_before`: their held slices are
    queued, to be published by the caller."""
    now = utcnow()
    to_publish: dict[Priority, list[str]] = {priority: [] for priority in Priority}
    query = (
        sa.select(studies.c.id, studies.c.priority)
        .where(studies.c.status == "receiving", studies.c.last_instance_at < idle_before)
        .order_by(studies.c.last_instance_at)
        .limit(limit)
    )
    with engine.begin() as connection:
        idle = connection.execute(query).all()
        for chunk in chunks(idle):
            ids = [row.id for row in chunk]
            connection.execute(
                studies.update()
                .where(studies.c.id.in_(ids), studies.c.status == "receiving")
                .values(status="queued", closed_at=now)
            )
        for row in idle:
            held = (
                scans.update()
                .where(scans.c.study_id == row.id, scans.c.status == "held")
                .values(status="queued")
                .returning(scans.c.id)
            )
            to_publish[Priority(row.priority)] += connection.execute(held).scalars().all()
    return Closed(len(idle), to_publish)


# -- the study decision ----------------------------------------------------------------------


def studies_of(connection: Connection, scan_ids: Sequence[str]) -> list[str]:
    """The ids of the studies these scans belong to."""
    found: set[str] = set()
    for chunk in chunks(scan_ids):
        query = sa.select(scans.c.study_id).where(
            scans.c.id.in_(chunk), scans.c.study_id.is_not(None)
        )
        found.update(connection.execute(query).scalars())
    return sorted(found)


def decide_ready(
    engine: Engine,
    scan_ids: Sequence[str],
    card: ModelCard,
    model_version: str,
    routing: Routing | None = None,
) -> list[Escalation]:
    """Decide every closed study of these scans whose slices are all finished; returns the
    escalations of the urgent ones (one per study, its most suspicious slice). The outbox rows
    of each decision (`routing`) are written in the same transaction.

    Each study row is locked while it is decided (PostgreSQL `FOR UPDATE`; SQLite writes one
    at a time), so two jobs finishing the last slices of one study decide it once.
    """
    escalations: list[Escalation] = []
    with engine.begin() as connection:
        for study_id in studies_of(connection, scan_ids):
            escalation = _decide_one(connection, study_id, card, model_version, routing)
            if escalation is not None:
                escalations.append(escalation)
    return escalations


def _decide_one(
    connection: Connection,
    study_id: str,
    card: ModelCard,
    model_version: str,
    routing: Routing | None,
) -> Escalation | None:
    lock = sa.select(studies.c.status, studies.c.decisions).where(studies.c.id == study_id)
    if connection.dialect.name == "postgresql":
        lock = lock.with_for_update()
    state = connection.execute(lock).first()
    if state is None or state.status != "queued":
        return None
    unfinished = sa.select(sa.func.count()).where(
        scans.c.study_id == study_id, scans.c.status.in_(UNFINISHED)
    )
    if connection.execute(unfinished).scalar_one():
        return None
    rows = connection.execute(
        sa.select(results.c.scan_id, results.c.p0, results.c.p1, results.c.p2)
        .join(scans, scans.c.id == results.c.scan_id)
        .where(scans.c.study_id == study_id)
        .order_by(scans.c.instance_number, scans.c.received_at, results.c.scan_id)
    ).all()
    now = utcnow()
    if not rows:  # every slice failed: nothing to decide on
        connection.execute(
            studies.update()
            .where(studies.c.id == study_id)
            .values(status="failed", classified_at=now)
        )
        return None
    decision = card.decide_study(np.array([[row.p0, row.p1, row.p2] for row in rows]))
    top_scan = rows[decision.top_slice].scan_id
    connection.execute(
        studies.update()
        .where(studies.c.id == study_id)
        .values(
            status="classified",
            classified_at=now,
            p2=decision.p2,
            urgent=decision.urgent,
            predicted=decision.predicted,
            top_scan_id=top_scan,
            model_version=model_version,
            decisions=studies.c.decisions + 1,
            saliency=None,
        )
    )
    if routing is not None:
        add_for_decision(connection, study_id, state.decisions + 1, decision.urgent, routing)
    if not decision.urgent:
        return None
    p2 = min(1.0, max(0.0, decision.p2))
    return Escalation(
        scan_id=top_scan, study_id=study_id, p2=p2, model_version=model_version, classified_at=now
    )


def undecided_before(engine: Engine, cutoff: datetime, limit: int) -> list[str]:
    """Closed studies, idle since `cutoff`, whose slices are all finished but which have no
    decision (the worker died between its results and the decision): one scan id of each."""
    unfinished = (
        sa.select(scans.c.id)
        .where(scans.c.study_id == studies.c.id, scans.c.status.in_(UNFINISHED))
        .exists()
    )
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
    slice is still the study's top one. True if stored."""
    with engine.begin() as connection:
        stored = connection.execute(
            studies.update()
            .where(studies.c.id == study_id, studies.c.top_scan_id == top_scan_id)
            .values(saliency=saliency)
        )
    return bool(stored.rowcount)
