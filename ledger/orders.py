"""The RIS's orders in the ledger, and what they do to the studies they name.

Each order of an HL7 order message (ORM^O01, OMI^O23) is one `orders` row; the latest row of
an accession (highest id) is that order's state now. A message is recorded once: its MSH-10
with the order's place in it is unique, so a message sent again adds nothing.

What an order does to the study whose accession it names, whichever arrives first:
- a STAT (or ASAP) order: the study and its waiting slices take the `stat` lane; slices
  already queued on the routine lane are handed back to be published again on `stat` (the
  classify job is idempotent: whichever copy runs second finds them done). A later order
  never demotes a slice already on `stat` ("stat wins", as at intake).
- a cancelled order (CA, OC): waiting slices fail with "order cancelled" and are never
  classified; an undecided study with nothing left running ends `failed`; a decided study's
  pending deliveries are not sent, and it leaves the worklist (`not_cancelled`).
Studies without an order go on as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ledger.statements import chunks, deliveries, scans, studies
from schemas.messages import Priority
from schemas.tables import Order, utcnow

orders = Order.__table__
CANCELLED = ("CA", "OC")
WAITING = ("held", "queued")
CANCEL_REASON = "order cancelled"
# HL7 table 0027: S stat and A ASAP take the stat lane (ASAP asks for sooner than routine, and
# with two lanes the routine one would drop that request); R and any other code are routine
LANE_OF_CODE = {"S": Priority.stat, "A": Priority.stat, "R": Priority.routine}


def lane_of(priority_code: str | None) -> Priority:
    """The lane of an order's HL7 priority code (S, A: stat; R, other, none: routine)."""
    return LANE_OF_CODE.get((priority_code or "").strip().upper(), Priority.routine)


@dataclass(frozen=True)
class ReceivedOrder:
    """One order (ORC with its OBR / TQ1) of an order message, as the listener parsed it."""

    order_number: int  # its place in the message, 1 for the first ORC
    order_control: str  # NW, XO, CA, OC
    accession: str
    placer_order_number: str | None = None
    filler_order_number: str | None = None
    patient_id: str | None = None
    requested_procedure: str | None = None
    priority_code: str | None = None
    cancel_reason: str | None = None


@dataclass
class Applied:
    """What orders did to their studies: slices to publish on each lane, slices stopped,
    pending deliveries stopped."""

    to_publish: dict[Priority, list[str]] = field(
        default_factory=lambda: {priority: [] for priority in Priority}
    )
    cancelled_scans: list[str] = field(default_factory=list)
    cancelled_deliveries: int = 0


def record_message(
    engine: Engine,
    message_control_id: str,
    message_type: str,
    received: Sequence[ReceivedOrder],
    received_at: datetime | None = None,
) -> bool:
    """Record the orders of one message in one transaction; False if this MSH-10 was
    recorded before (nothing is added)."""
    received_at = received_at or utcnow()
    rows = [_order_row(order, message_control_id, message_type, received_at) for order in received]
    seen = sa.select(orders.c.id).where(orders.c.message_control_id == message_control_id)
    try:
        with engine.begin() as connection:
            if connection.execute(seen.limit(1)).first() is not None:
                return False
            connection.execute(orders.insert(), rows)
    except IntegrityError:  # the same message on two connections at once: the other won
        return False
    return True


def _order_row(
    order: ReceivedOrder, message_control_id: str, message_type: str, received_at: datetime
) -> dict[str, Any]:
    cancelled = order.order_control in CANCELLED
    return {
        "message_control_id": message_control_id,
        "order_number": order.order_number,
        "message_type": message_type,
        "order_control": order.order_control,
        "accession": order.accession,
        "placer_order_number": order.placer_order_number,
        "filler_order_number": order.filler_order_number,
        "patient_id": order.patient_id,
        "requested_procedure": order.requested_procedure,
        "priority_code": order.priority_code,
        "priority": lane_of(order.priority_code).value,
        "cancel_reason": _cancel_reason(order) if cancelled else None,
        "received_at": received_at,
    }


def _cancel_reason(order: ReceivedOrder) -> str:
    """ "order cancelled", with the RIS's reason (ORC-16) when it gave one."""
    reason = " ".join((order.cancel_reason or "").split())
    return f"{CANCEL_REASON}: {reason}"[:500] if reason else CANCEL_REASON


# -- an accession's order now ----------------------------------------------------------------


def latest_order_id(accession: sa.ColumnElement[Any]) -> sa.ScalarSelect:
    """The id of the latest order row of `accession` (a column of the enclosing query), or
    NULL: correlated, so each lookup is one probe of the (accession, id) index."""
    return (
        sa.select(sa.func.max(orders.c.id))
        .where(orders.c.accession == accession)
        .correlate_except(orders)
        .scalar_subquery()
    )


def latest_order_of(accession: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """The join condition of `orders` onto the latest order of `accession`."""
    return orders.c.id == latest_order_id(accession)


def is_cancelled(accession: sa.ColumnElement[Any]) -> sa.Exists:
    """True where the latest order of `accession` (a study's) is cancelled."""
    latest = orders.alias("latest")
    return (
        sa.select(latest.c.id)
        .where(
            latest.c.id == latest_order_id(accession),
            latest.c.order_control.in_(CANCELLED),
        )
        .exists()
    )


def not_cancelled(accession: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """True where `accession` (a study's) has no cancelled order; no accession: no order."""
    return ~is_cancelled(accession)


def order_states(connection: Connection, accessions: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Accession -> its latest order row, for those of these accessions that have one."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(sorted(set(accessions))):
        latest = (
            sa.select(sa.func.max(orders.c.id))
            .where(orders.c.accession.in_(chunk))
            .group_by(orders.c.accession)
        )
        query = sa.select(orders).where(orders.c.id.in_(latest))
        found.update({row.accession: dict(row._mapping) for row in connection.execute(query)})
    return found


def list_orders(engine: Engine, limit: int = 1000) -> list[dict[str, Any]]:
    """The orders received, newest first."""
    query = sa.select(orders).order_by(orders.c.id.desc()).limit(limit)
    with engine.begin() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


# -- what orders do to studies ---------------------------------------------------------------


def apply_to_scans(
    engine: Engine, accession_of: Mapping[str, str | None]
) -> dict[str, Priority | None]:
    """At intake: scans just recorded (scan id -> accession) take their order's lane, or fail
    when it is cancelled. No accession, no order: nothing is read or written.

    Returns scan id -> `stat` for the scans a STAT order moved, None for those a cancelled
    order stopped; the others are not named and go on as submitted."""
    by_accession: dict[str, list[str]] = {}
    for scan_id, accession in accession_of.items():
        if accession:
            by_accession.setdefault(accession, []).append(scan_id)
    lanes: dict[str, Priority | None] = {}
    if not by_accession:
        return lanes
    with engine.begin() as connection:
        for accession, state in order_states(connection, list(by_accession)).items():
            applied = _apply_state(connection, state, scan_ids=by_accession[accession])
            lanes.update(dict.fromkeys(applied.cancelled_scans))
            if state["order_control"] not in CANCELLED and state["priority"] == Priority.stat:
                lanes.update(dict.fromkeys(by_accession[accession], Priority.stat))
    return lanes


def apply_to_studies(engine: Engine, accessions: Sequence[str]) -> Applied:
    """After orders arrived: the studies of these accessions that are still waiting take
    their order's lane (queued slices to re-publish on `stat`), or stop when it is cancelled."""
    total = Applied()
    with engine.begin() as connection:
        for state in order_states(connection, accessions).values():
            applied = _apply_state(connection, state)
            for priority, ids in applied.to_publish.items():
                total.to_publish[priority] += ids
            total.cancelled_scans += applied.cancelled_scans
            total.cancelled_deliveries += applied.cancelled_deliveries
    return total


def _apply_state(
    connection: Connection, state: dict[str, Any], scan_ids: Sequence[str] | None = None
) -> Applied:
    """One accession's order on its studies (or only on `scan_ids` of them, at intake)."""
    of_accession = sa.select(studies.c.id).where(studies.c.accession == state["accession"])
    study_ids = list(connection.execute(of_accession).scalars())
    if state["order_control"] in CANCELLED:
        return _cancel(connection, study_ids, state["cancel_reason"] or CANCEL_REASON)
    applied = Applied()
    if state["priority"] != Priority.stat.value or not study_ids:
        return applied
    connection.execute(
        studies.update()
        .where(studies.c.id.in_(study_ids), studies.c.status.not_in(("classified", "failed")))
        .values(priority=Priority.stat.value)
    )
    waiting = scans.c.status.in_(WAITING) & scans.c.study_id.in_(study_ids)
    if scan_ids is not None:
        waiting &= scans.c.id.in_(list(scan_ids))
    moved = (
        scans.update()
        .where(waiting, scans.c.priority != Priority.stat.value)
        .values(priority=Priority.stat.value)
        .returning(scans.c.id, scans.c.status, scans.c.published_at)
    )
    for row in connection.execute(moved):
        if row.status == "queued" and row.published_at is not None:
            applied.to_publish[Priority.stat].append(row.id)  # its routine job is on its way
    return applied


def _cancel(connection: Connection, study_ids: Sequence[str], reason: str) -> Applied:
    """Stop a cancelled order's studies: waiting slices fail, undecided studies with nothing
    running end `failed`, decided ones keep their decision but send nothing more."""
    applied = Applied()
    if not study_ids:
        return applied
    stopped = (
        scans.update()
        .where(scans.c.study_id.in_(study_ids), scans.c.status.in_(WAITING))
        .values(status="failed", error=reason[:2000])
        .returning(scans.c.id)
    )
    applied.cancelled_scans = list(connection.execute(stopped).scalars())
    running = (
        sa.select(scans.c.id)
        .where(scans.c.study_id == studies.c.id, scans.c.status == "processing")
        .exists()
    )
    connection.execute(
        studies.update()
        .where(
            studies.c.id.in_(study_ids),
            studies.c.status.in_(("receiving", "queued")),
            ~running,
        )
        .values(status="failed", closed_at=utcnow())
    )
    unsent = connection.execute(
        deliveries.update()
        .where(deliveries.c.study_id.in_(study_ids), deliveries.c.status == "pending")
        .values(status="failed", last_error=reason[:2000])
    )
    applied.cancelled_deliveries = unsent.rowcount or 0
    return applied


def study_is_cancelled(study_id: sa.ColumnElement[Any]) -> sa.Exists:
    """True where the study `study_id` names (a column of the outer query) has a cancelled
    order."""
    return (
        sa.select(studies.c.id)
        .where(studies.c.id == study_id, is_cancelled(studies.c.accession))
        .exists()
    )


def cancelled_studies(connection: Connection, study_ids: Sequence[str]) -> set[str]:
    """Those of these studies whose order is cancelled now (their decisions are not sent)."""
    found: set[str] = set()
    for chunk in chunks(list(study_ids)):
        query = sa.select(studies.c.id).where(
            studies.c.id.in_(chunk), is_cancelled(studies.c.accession)
        )
        found.update(connection.execute(query).scalars())
    return found
