"""Celery tasks: classify a batch of scans, and put class-2 results on the urgent worklist.

Both are idempotent: a job delivered twice leaves one result per scan and one worklist row.
Database and broker outages are retried with exponential backoff (capped); a classification
job that still cannot run after `max_attempts` retries marks its scans `failed` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import kombu.exceptions
import numpy as np
import redis.exceptions
import sqlalchemy.exc
from sqlalchemy.engine import Engine

from gateway.publish import describe, publish_escalations, publish_jobs
from gateway.webhook import page_clinicians
from imaging.canonical import SCAN_SIZE
from ledger import scans as ledger
from ledger import worklist
from ledger.database import engine_for
from schemas.messages import ClassifyJob, Escalation
from schemas.model_card import ModelNotFoundError
from schemas.queues import CLASSIFY_TASK, ESCALATE_TASK, RECONCILE_TASK
from schemas.settings import Settings, get_settings
from worker.app import app
from worker.model import ServingModel, current_model
from worker.reconcile import run_reconcile

log = logging.getLogger(__name__)

RETRYABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
    ModelNotFoundError,  # a model may be published in a moment
)
BACKOFF_CAP_S = 60
SCAN_BYTES = SCAN_SIZE * SCAN_SIZE


class TransientError(RuntimeError):
    """A retryable failure, described without SQL parameters or other payload."""


def backoff(retries: int) -> int:
    return min(BACKOFF_CAP_S, 2**retries)


# -- classification ------------------------------------------------------------------------


def classify_scans(
    engine: Engine,
    scan_ids: Sequence[str],
    model: ServingModel,
    max_attempts: int,
    publish: Callable[[Escalation], None],
    refuse_redelivered: bool = False,
) -> dict[str, int]:
    """Claim, classify in one forward pass, record in one transaction, then escalate.

    With `refuse_redelivered`, raises `ledger.Redelivered` (nothing claimed) for a batch
    holding a scan that was started before.
    """
    claim = ledger.claim(engine, scan_ids, max_attempts, refuse_redelivered)
    good = {sid: raw for sid, raw in claim.pixels.items() if len(raw) == SCAN_BYTES}
    corrupt = sorted(set(claim.pixels) - set(good))
    if corrupt:
        ledger.mark_failed(engine, corrupt, f"stored pixels are not {SCAN_BYTES} bytes")
    escalations: list[Escalation] = []
    if good:
        ids = list(good)
        pixels = np.stack(
            [np.frombuffer(good[sid], np.uint8).reshape(SCAN_SIZE, SCAN_SIZE) for sid in ids]
        )
        probabilities = model.probabilities(pixels)
        predicted, urgent = model.predicted_classes(probabilities), model.is_urgent(probabilities)
        scored = [
            ledger.ScoredScan(sid, tuple(float(p) for p in row), int(label), bool(flag))
            for sid, row, label, flag in zip(ids, probabilities, predicted, urgent, strict=True)
        ]
        classified_at = ledger.record_results(
            engine,
            scored,
            model.version,
            str(model.directory),
            model.urgent_threshold,
            model.card.model_dump(mode="json"),
        )
        escalations = [
            Escalation(
                scan_id=item.scan_id,
                p2=min(1.0, max(0.0, item.probabilities[2])),
                model_version=model.version,
                classified_at=classified_at,
            )
            for item in scored
            if item.urgent
        ]
    finished_before = sorted(set(scan_ids) - set(claim.pixels) - set(claim.exhausted))
    if finished_before:  # a repeated job: re-send escalations a lost publish may have dropped
        escalations += worklist.unescalated(engine, finished_before)
    for escalation in escalations:
        publish(escalation)
    return {
        "classified": len(good),
        "urgent": len(escalations),
        "failed": len(corrupt) + len(claim.exhausted),
    }


@app.task(name=CLASSIFY_TASK, bind=True, max_retries=None)  # capped by max_attempts below
def classify(self, job: dict[str, Any]) -> dict[str, int]:  # noqa: ANN001 - bound Celery task
    """Classify one batch of scans (ids only; pixels come from the ledger)."""
    job = ClassifyJob.model_validate(job)
    settings = get_settings()
    engine = engine_for(settings.resolved_database_url)
    try:
        escalations: list[Escalation] = []
        outcome = classify_scans(
            engine,
            job.scan_ids,
            current_model(settings),
            settings.max_attempts,
            escalations.append,
            refuse_redelivered=len(job.scan_ids) > 1 and self.request.retries == 0,
        )
        publish_escalations(escalations, settings)
        return outcome
    except ledger.Redelivered:
        return _split(job, settings)
    except RETRYABLE as error:
        reason = describe(error)
        if self.request.retries >= settings.max_attempts:
            _give_up(
                engine, job.scan_ids, f"gave up after {self.request.retries} retries: {reason}"
            )
            raise TransientError(reason) from None
        log.warning("job of %d scans: %s; retrying", len(job.scan_ids), reason)
        raise self.retry(
            exc=TransientError(reason), countdown=backoff(self.request.retries)
        ) from None
    except Exception as error:  # a model or data fault: retrying would fail the same way
        _give_up(engine, job.scan_ids, f"classification failed: {describe(error)}")
        raise


def _split(job: ClassifyJob, settings: Settings) -> dict[str, int]:
    """A batch whose worker was lost: re-send each scan alone, so one bad scan fails alone."""
    for scan_id in job.scan_ids:
        publish_jobs([scan_id], job.priority, settings)
    log.warning("job of %d scans was redelivered; re-sent as single-scan jobs", len(job.scan_ids))
    return {"split": len(job.scan_ids)}


def _give_up(engine: Engine, scan_ids: Sequence[str], reason: str) -> None:
    try:
        ledger.mark_failed(engine, scan_ids, reason)
    except RETRYABLE as error:  # the reconciler will find them still queued or processing
        log.error("could not mark %d scans failed: %s", len(scan_ids), describe(error))
    log.error("marked up to %d scans failed: %s", len(scan_ids), reason)


# -- escalation ----------------------------------------------------------------------------


@app.task(name=ESCALATE_TASK, bind=True, max_retries=None)
def escalate(self, payload: dict[str, Any] | list[dict[str, Any]]) -> int:  # noqa: ANN001
    """Put class-2 scans (one escalation or a job's list) on the worklist once each, and notify.

    Retried until the database answers; returns how many this call added.
    """
    escalations = [
        Escalation.model_validate(item)
        for item in (payload if isinstance(payload, list) else [payload])
    ]
    settings = get_settings()
    try:
        added = worklist.add_urgent_cases(engine_for(settings.resolved_database_url), escalations)
    except RETRYABLE as error:
        reason = describe(error)
        log.warning("%d urgent scans: %s; retrying", len(escalations), reason)
        raise self.retry(
            exc=TransientError(reason), countdown=backoff(self.request.retries)
        ) from None
    page_clinicians(settings, added)
    return len(added)


# -- reconciliation ------------------------------------------------------------------------


@app.task(name=RECONCILE_TASK)
def reconcile() -> dict[str, int]:
    """Re-send what the ledger says is stuck or overdue (see ledger/reconcile.py)."""
    return run_reconcile(get_settings()).as_dict()
