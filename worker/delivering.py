"""Results back to the hospital: the saliency map of each urgent study, and the `deliver` task.

After a job decides studies, the routine worker (which holds the model) computes the saliency
map of each urgent study's most suspicious slice for its key image, then publishes the
study's pending outbox rows to the `deliveries` queue. A `deliver` job claims its row, sends
it (gateway/outbox/sending.py), and marks it delivered, due again after a capped exponential backoff,
or failed when the receiver refuses the content. The reconciler re-sends whatever is due.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from sqlalchemy.engine import Engine

from gateway.broker.publish import publish_deliveries
from gateway.outbox import sending as outbox
from gateway.outbox.report import DeliveryError
from imaging.canonical import SCAN_SIZE
from ledger import deliveries, studies
from ledger.statements import scan_pixels
from schemas.errors import describe
from schemas.messages import Escalation
from schemas.queues import DELIVER_TASK
from schemas.settings import Settings, get_settings
from worker.app import app
from worker.model import ServingModel

log = logging.getLogger(__name__)


def after_decisions(
    engine: Engine,
    model: ServingModel,
    escalations: Sequence[Escalation],
    scan_ids: Sequence[str],
    settings: Settings,
) -> None:
    """Saliency for the urgent studies just decided, then their outbox rows to the queue."""
    if settings.dicom_destination:
        for escalation in escalations:
            if escalation.study_id is not None:
                store_saliency(engine, model, escalation.study_id, escalation.scan_id)
    pending = deliveries.pending_for_scans(engine, scan_ids)
    publish_deliveries(pending, settings)


def store_saliency(engine: Engine, model: ServingModel, study_id: str, scan_id: str) -> None:
    """Occlusion saliency of one slice (one batched forward pass), kept as 64x64 uint8."""
    import sqlalchemy as sa

    from worker.saliency import occlusion_map

    with engine.begin() as connection:
        raw = connection.execute(
            sa.select(scan_pixels.c.pixels).where(scan_pixels.c.scan_id == scan_id)
        ).scalar()
    if raw is None or len(raw) != SCAN_SIZE * SCAN_SIZE:
        return
    scan = np.frombuffer(raw, np.uint8).reshape(SCAN_SIZE, SCAN_SIZE)
    saliency = occlusion_map(model.probabilities, scan)
    as_bytes = np.clip(np.rint(saliency * 255), 0, 255).astype(np.uint8).tobytes()
    studies.store_saliency(engine, study_id, scan_id, as_bytes)


@app.task(name=DELIVER_TASK)
def deliver(delivery_id: str) -> str:
    """Send one outbox row if it is due; returns what happened (for the logs)."""
    settings = get_settings()
    from ledger.database import engine_for

    engine = engine_for(settings.resolved_database_url)
    row = deliveries.claim(engine, delivery_id)
    if row is None:
        return "not due"
    try:
        outbox.send(engine, row, settings)
    except DeliveryError as error:
        if not error.retryable:
            deliveries.mark_failed(engine, delivery_id, error.reason)
            log.error("delivery %s (%s) failed: %s", delivery_id, row["channel"], error.reason)
            return "failed"
        return _later(engine, row, error.reason, settings)
    except Exception as error:  # a bug or an unexpected receiver: retried, never lost
        return _later(engine, row, f"internal error: {describe(error)}", settings)
    deliveries.mark_delivered(engine, delivery_id)
    return "delivered"


def _later(engine: Engine, row: dict, reason: str, settings: Settings) -> str:
    when = deliveries.mark_retry(engine, row["id"], row["attempts"], reason)
    delay = deliveries.backoff_s(row["attempts"])
    log.warning(
        "delivery %s (%s) attempt %d: %s; again in %d s",
        row["id"], row["channel"], row["attempts"], reason, delay,
    )  # fmt: skip
    publish_deliveries([row["id"]], settings, countdown=delay)
    return f"retry at {when.isoformat()}"
