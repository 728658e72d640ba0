"""The outbox: every outward message about a study decision is a `deliveries` row.

Rows are written in the same transaction as the decision they report (`add_for_decisions`,
called by `ledger.studies`), one per configured channel, and carry the key the receiver is
idempotent on. A sender claims a due row, and marks it delivered, or due again later with the
reason (exponential backoff, capped), or failed when the receiver refuses the content.

A key image (channel `key_image`, or `dicomweb_key` by STOW-RS; urgent studies) needs the study's saliency map, which a model
worker renders after the decision: its row is written `waiting`, turns `pending` in the
transaction that stores the map (`ledger.studies.store_saliency`), and is never retried with
backoff while it waits; the reconciler has the map rendered again for a row left waiting.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger import audit
from ledger.orders import CANCEL_REASON, cancelled_studies, study_is_cancelled
from ledger.statements import chunks, deliveries, scans, studies
from schemas.queues import DELIVER_TIME_LIMIT_S
from schemas.tables import as_utc, utcnow

BACKOFF_CAP_S = 60
# a claimed row is due again after this if its sender died: longer than a deliver job may run
CLAIM_LEASE_S = DELIVER_TIME_LIMIT_S + 30
KEY_IMAGE = "key_image"  # the channel whose row waits for the study's saliency map
DICOMWEB_KEY_IMAGE = "dicomweb_key"  # the same key image, by STOW-RS
KEY_IMAGE_CHANNELS = (KEY_IMAGE, DICOMWEB_KEY_IMAGE)


@dataclass(frozen=True)
class Routing:
    """Which channels get a message: for every decided study, and for urgent ones only."""

    every: tuple[str, ...] = ()
    urgent_only: tuple[str, ...] = field(default=())

    def channels(self, urgent: bool) -> tuple[str, ...]:
        return self.every + (self.urgent_only if urgent else ())


def idempotency_key(study_id: str, decision: int, channel: str) -> str:
    """What a receiver deduplicates on: the same for every resend of one message."""
    return f"{study_id}.{decision}.{channel}"


def add_for_decisions(
    connection: Connection, decided: Sequence[tuple[str, int, bool]], routing: Routing
) -> None:
    """The outbox rows of these decisions, (study id, decision number, urgent) each, in the
    caller's transaction; a key image `waiting`, and one left waiting by an earlier decision
    of the study fails as superseded (the new decision renders its own). A study whose order
    is cancelled gets none."""
    _supersede_waiting(connection, decided)
    stopped = cancelled_studies(connection, [study_id for study_id, _, _ in decided])
    decided = [item for item in decided if item[0] not in stopped]
    now = utcnow()
    rows = [
        {
            "id": str(uuid.uuid4()),
            "study_id": study_id,
            "decision": decision,
            "channel": channel,
            "idempotency_key": idempotency_key(study_id, decision, channel),
            "status": "waiting" if channel in KEY_IMAGE_CHANNELS else "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for study_id, decision, urgent in decided
        for channel in routing.channels(urgent)
    ]
    if rows:
        connection.execute(deliveries.insert(), rows)


def _supersede_waiting(connection: Connection, decided: Sequence[tuple[str, int, bool]]) -> None:
    """Key images still waiting for an earlier decision of these re-decided studies: failed."""
    again = [study_id for study_id, decision, _urgent in decided if decision > 1]
    for chunk in chunks(again):
        connection.execute(
            deliveries.update()
            .where(deliveries.c.study_id.in_(chunk), deliveries.c.status == "waiting")
            .values(status="failed", last_error="superseded by a later decision of the study")
        )


def release_key_images(connection: Connection, study_id: str) -> None:
    """The study's waiting key images become due now (its saliency map was just stored, in
    the caller's transaction)."""
    connection.execute(
        deliveries.update()
        .where(deliveries.c.study_id == study_id, deliveries.c.status == "waiting")
        .values(status="pending", next_attempt_at=utcnow(), last_error=None)
    )


def key_images_due(engine: Engine, study_id: str) -> list[str]:
    """Ids of the study's pending key-image deliveries (to send now)."""
    query = sa.select(deliveries.c.id).where(
        deliveries.c.study_id == study_id,
        deliveries.c.channel.in_(KEY_IMAGE_CHANNELS),
        deliveries.c.status == "pending",
    )
    with engine.begin() as connection:
        return sorted(connection.execute(query).scalars())


def fail_waiting(engine: Engine, study_id: str, reason: str) -> None:
    """The study's waiting key images can never be rendered: failed, with the reason."""
    with engine.begin() as connection:
        connection.execute(
            deliveries.update()
            .where(deliveries.c.study_id == study_id, deliveries.c.status == "waiting")
            .values(status="failed", last_error=reason[:2000])
        )


def waiting_key_images(engine: Engine, before: datetime, now: datetime, limit: int) -> list[str]:
    """Studies whose key image has waited for its saliency map since `before` (the render job
    was lost, or the study was decided where no model runs): their ids, each row's wait
    restarted at `now`, so one reconcile period passes before the next re-render."""
    query = (
        sa.select(deliveries.c.id, deliveries.c.study_id)
        .where(deliveries.c.status == "waiting", deliveries.c.next_attempt_at <= before)
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
    )
    with engine.begin() as connection:
        rows = connection.execute(query).all()
        for chunk in chunks([row.id for row in rows]):
            connection.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(chunk), deliveries.c.status == "waiting")
                .values(next_attempt_at=now)
            )
    return sorted({row.study_id for row in rows})


def mark_waiting(engine: Engine, delivery_id: str, reason: str) -> None:
    """A claimed key image whose saliency map is missing after all: back to waiting (no
    backoff, the reconciler has the map rendered again)."""
    with engine.begin() as connection:
        connection.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.status == "pending")
            .values(status="waiting", next_attempt_at=utcnow(), last_error=reason[:2000])
        )


def pending_for_scans(engine: Engine, scan_ids: Sequence[str]) -> list[str]:
    """Ids of pending deliveries about the studies of these scans (to send now)."""
    found: list[str] = []
    with engine.begin() as connection:
        for chunk in chunks(scan_ids):
            of_scans = sa.select(scans.c.study_id).where(scans.c.id.in_(chunk))
            query = sa.select(deliveries.c.id).where(
                deliveries.c.study_id.in_(of_scans), deliveries.c.status == "pending"
            )
            found += connection.execute(query).scalars().all()
    return sorted(set(found))


def due(engine: Engine, now: datetime, limit: int) -> list[str]:
    """Pending deliveries whose next attempt is due (for the reconciler to re-send)."""
    query = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
    )
    with engine.begin() as connection:
        return list(connection.execute(query).scalars())


def claim(engine: Engine, delivery_id: str) -> dict[str, Any] | None:
    """Take a pending, due delivery (attempts + 1, leased for CLAIM_LEASE_S); None if it is
    delivered, failed, or not due (another sender has it, or its backoff runs). A delivery
    whose study's order is cancelled fails here instead."""
    now = utcnow()
    pending = (deliveries.c.id == delivery_id, deliveries.c.status == "pending")
    taken = (
        deliveries.update()
        .where(*pending, deliveries.c.next_attempt_at <= now)
        .values(
            attempts=deliveries.c.attempts + 1,
            next_attempt_at=now + timedelta(seconds=CLAIM_LEASE_S),
        )
        .returning(*deliveries.c)
    )
    with engine.begin() as connection:
        connection.execute(
            deliveries.update()
            .where(*pending, study_is_cancelled(deliveries.c.study_id))
            .values(status="failed", last_error=CANCEL_REASON)
        )  # written by a decision in the instant its order's cancel was applied: never sent
        row = connection.execute(taken).first()
    return None if row is None else dict(row._mapping)


def mark_delivered(engine: Engine, delivery_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.status == "pending")
            .values(status="delivered", delivered_at=utcnow(), last_error=None)
        )


def backoff_s(attempts: int) -> int:
    return min(BACKOFF_CAP_S, 2 ** max(0, attempts - 1))


def mark_retry(engine: Engine, delivery_id: str, attempts: int, reason: str) -> datetime:
    """Due again after the backoff of `attempts`; returns when."""
    when = utcnow() + timedelta(seconds=backoff_s(attempts))
    with engine.begin() as connection:
        connection.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.status == "pending")
            .values(next_attempt_at=when, last_error=reason[:2000])
        )
    return when


def mark_failed(engine: Engine, delivery_id: str, reason: str) -> None:
    """The receiver refused the content: sending it again would not help."""
    with engine.begin() as connection:
        connection.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.status == "pending")
            .values(status="failed", last_error=reason[:2000])
        )


def list_deliveries(engine: Engine, limit: int = 1000) -> list[dict[str, Any]]:
    """The outbox, newest first (no patient data: our ids, channel, status, times, reason)."""
    query = (
        sa.select(
            deliveries.c.id,
            deliveries.c.study_id,
            studies.c.study_uid,
            deliveries.c.decision,
            deliveries.c.channel,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.last_error,
            deliveries.c.created_at,
            deliveries.c.next_attempt_at,
            deliveries.c.delivered_at,
        )
        .join(studies, studies.c.id == deliveries.c.study_id)
        .order_by(deliveries.c.created_at.desc(), deliveries.c.id)
        .limit(limit)
    )
    with engine.begin() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        for key in ("created_at", "next_attempt_at", "delivered_at"):
            row[key] = as_utc(row[key])
    return rows


def waiting_by_channel(engine: Engine) -> dict[str, int]:
    """Deliveries not sent yet (pending or waiting) per channel (for `triage stats`)."""
    query = (
        sa.select(deliveries.c.channel, sa.func.count())
        .where(deliveries.c.status.in_(("pending", "waiting")))
        .group_by(deliveries.c.channel)
    )
    with engine.begin() as connection:
        return dict(connection.execute(query).all())


def report_facts(engine: Engine, study_id: str) -> dict[str, Any] | None:
    """What a message about a study's decision says: the study row (decision, identity), its
    slice count, its most suspicious slice's identity, pixels and saliency map, and the
    placer and filler order numbers of its order (None without one)."""
    from ledger.orders import latest_order_of, orders
    from ledger.statements import scan_pixels

    top = scans.alias("top")
    slices = sa.select(sa.func.count()).where(scans.c.study_id == studies.c.id).scalar_subquery()
    query = (
        sa.select(
            studies,
            slices.label("slices"),
            top.c.series_uid.label("top_series_uid"),
            top.c.sop_uid.label("top_sop_uid"),
            top.c.modality.label("top_modality"),
            scan_pixels.c.pixels.label("top_pixels"),
            orders.c.placer_order_number,
            orders.c.filler_order_number,
        )
        .outerjoin(top, top.c.id == studies.c.top_scan_id)
        .outerjoin(orders, latest_order_of(studies.c.accession))
        .outerjoin(scan_pixels, scan_pixels.c.scan_id == studies.c.top_scan_id)
        .where(studies.c.id == study_id)
    )
    with engine.begin() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    facts = dict(row._mapping)
    for key in ("received_at", "classified_at", "closed_at", "last_instance_at"):
        facts[key] = as_utc(facts[key])
    return facts


def retry_now(engine: Engine, delivery_id: str, who: str, address: str | None = None) -> bool:
    """Make a pending or failed delivery due now (an operator's retry), with its audit row;
    False when there is no such delivery or it was delivered already."""
    with engine.begin() as connection:
        row = connection.execute(
            sa.select(deliveries.c.study_id, deliveries.c.status, deliveries.c.channel).where(
                deliveries.c.id == delivery_id
            )
        ).first()
        if row is None or row.status == "delivered":
            return False
        connection.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id)
            .values(status="pending", next_attempt_at=utcnow())
        )
        detail = f"delivery={delivery_id} channel={row.channel} was={row.status}"
        audit.record(connection, who, "retry_delivery", row.study_id, address, detail)
    return True
