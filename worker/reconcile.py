"""One reconciler pass against the configured ledger and broker (the CLI and the beat task).

The plan lives in `ledger/reconcile.py`; this wires it to the broker through the gateway's
publishers and pager.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from gateway.broker.publish import (
    publish_deliveries,
    publish_escalations,
    publish_jobs,
    publish_key_image_renders,
)
from gateway.broker.server import broker_url, queue_depths, redis_client
from gateway.outbox.routing import routing, sends_key_images
from ledger import deliveries, studies
from ledger.database import engine_for
from ledger.reconcile import SCANS_PER_RUN, Decide, ReconcileReport, reconcile
from schemas.model_card import ModelNotFoundError, read_card, resolve_model_dir
from schemas.queues import URGENT_QUEUE
from schemas.settings import Settings
from schemas.tables import utcnow
from worker.paging import page_clinicians


def run_reconcile(settings: Settings) -> ReconcileReport:
    """One pass: re-send what is stuck, move overdue scans ahead, page unpaged cases, decide
    and close studies left behind, have waiting key images rendered (when a PACS is
    configured), send deliveries that are due."""
    engine = engine_for(settings.resolved_database_url)
    urgent_waiting = queue_depths(redis_client(broker_url(settings)), (URGENT_QUEUE,))
    report = reconcile(
        engine,
        settings,
        lambda ids, priority: publish_jobs(ids, priority, settings),
        lambda escalation: publish_escalations([escalation], settings),
        urgent_queue_empty=urgent_waiting[URGENT_QUEUE] == 0,
        page=lambda scan_ids: page_clinicians(settings, scan_ids),
        decide=_decider(engine, settings),
        render=(
            (lambda study_ids: publish_key_image_renders(study_ids, settings))
            if sends_key_images(settings)
            else None
        ),
    )
    due = deliveries.due(engine, utcnow(), SCANS_PER_RUN)  # a claim makes a resend harmless
    publish_deliveries(due, settings)
    report.deliveries = len(due)
    return report


def _decider(engine: Engine, settings: Settings) -> Decide | None:
    """Decide studies by the card of the model the workers serve (no model yet: not now)."""
    try:
        card = read_card(resolve_model_dir(settings.resolved_model_dir))
    except ModelNotFoundError:
        return None
    route = routing(settings)
    return lambda scan_ids: studies.decide_ready(engine, scan_ids, card, card.version, route)
