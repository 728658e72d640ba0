"""The `deliver` task: one outbox row back to the hospital.

A `deliver` job (on the `deliveries` queue, published after a decision's commit, after a key
image's saliency map is stored, and by the reconciler for rows that are due) claims its row,
sends it (gateway/outbox/sending.py), and marks it delivered, due again after a capped
exponential backoff, or failed when the receiver refuses the content. A key image whose
saliency map is missing goes back to `waiting` instead of retrying: the reconciler has the
map rendered (worker/rendering.py).
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from gateway.broker.publish import publish_deliveries
from gateway.outbox import sending as outbox
from gateway.outbox.report import DeliveryError, NotReady
from ledger import deliveries
from ledger.database import engine_for
from schemas.errors import describe
from schemas.queues import DELIVER_TASK
from schemas.settings import Settings, get_settings
from worker.app import app

log = logging.getLogger(__name__)


@app.task(name=DELIVER_TASK)
def deliver(delivery_id: str) -> str:
    """Send one outbox row if it is due; returns what happened (for the logs)."""
    settings = get_settings()
    engine = engine_for(settings.resolved_database_url)
    row = deliveries.claim(engine, delivery_id)
    if row is None:
        return "not due"
    try:
        outbox.send(engine, row, settings)
    except NotReady as error:
        deliveries.mark_waiting(engine, delivery_id, error.reason)
        log.warning("delivery %s (%s) waits: %s", delivery_id, row["channel"], error.reason)
        return "waiting"
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
