"""Celery tasks: classify a batch of scans, put urgent studies on the worklist, reconcile.

`classify` ends at the committed decision: claim, one forward pass, then the results and the
study decisions (with their outbox rows) in one transaction; after the commit it publishes
the escalations, the deliveries that are due and a `render_key_image` job per urgent study
(worker/rendering.py). Classification and escalation are idempotent: a job delivered twice
leaves one result per scan and one worklist row. Database and broker outages and a missing
model are retried with exponential backoff (capped); a classification job that still cannot
run after `max_attempts` retries leaves its scans waiting in `queued` with the reason (the
reconciler re-sends them). Only a scan's own faults (unusable pixels, a worker lost to it
`max_attempts` times, a model or data exception) end in `failed`.
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

from gateway.broker.publish import (
    publish_deliveries,
    publish_escalations,
    publish_jobs,
    publish_key_image_renders,
)
from gateway.outbox.routing import routing, sends_key_images
from imaging.canonical import SCAN_SIZE
from imaging.statistics import input_statistics
from ledger import deliveries, worklist
from ledger import scans as ledger
from ledger.database import engine_for
from ledger.deliveries import Routing
from schemas.errors import describe
from schemas.messages import ClassifyJob, Escalation
from schemas.model_card import ModelNotFoundError
from schemas.queues import CLASSIFY_TASK, ESCALATE_TASK, RECONCILE_TASK
from schemas.settings import Settings, get_settings
from worker.app import app
from worker.model import ServingModel, current_model
from worker.paging import page_clinicians
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
SCAN_BYTES = ledger.SCAN_BYTES


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
    routing: Routing | None = None,
) -> dict[str, int]:
    """Claim, classify in one forward pass, then in one transaction record the results and
    decide the studies whose last slice this was (with their outbox rows, by `routing`);
    then escalate.

    With `refuse_redelivered`, raises `ledger.Redelivered` (nothing claimed) for a batch
    holding a scan that was started before. A database or broker error after the claim
    puts the claimed scans back in `queued` (the claim un-counted) and is raised again.
    """
    claim = ledger.claim(engine, scan_ids, max_attempts, refuse_redelivered)
    try:
        return _classify_claimed(engine, scan_ids, claim, model, publish, routing)
    except RETRYABLE as error:
        _release(engine, list(claim.pixels), reason_for(error))
        raise


def _classify_claimed(
    engine: Engine,
    scan_ids: Sequence[str],
    claim: ledger.Claim,
    model: ServingModel,
    publish: Callable[[Escalation], None],
    routing: Routing | None,
) -> dict[str, int]:
    good = {sid: raw for sid, raw in claim.pixels.items() if len(raw) == SCAN_BYTES}
    corrupt = sorted(set(claim.pixels) - set(good))
    # every study of these scans whose slices are all finished is decided in the results'
    # transaction, once: also one whose last slices another job finished or failed
    recorded, escalations = ledger.record_and_decide(
        engine, scan_ids, _score(good, model) if good else [], corrupt, _record_of(model), routing
    )
    finished = [*recorded.scan_ids, *corrupt, *claim.exhausted]
    # a repeated job, or scans another delivery finished first: re-send escalations a lost
    # publish may have dropped (the worklist insert is idempotent)
    finished_before = sorted(set(scan_ids) - set(finished))
    if finished_before:
        decided_now = {escalation.study_id for escalation in escalations}
        escalations += [
            escalation
            for escalation in worklist.unescalated(engine, finished_before)
            if escalation.study_id not in decided_now
        ]
    for escalation in escalations:
        publish(escalation)
    return {
        "classified": len(recorded.scan_ids),
        "urgent": len(escalations),
        "failed": len(corrupt) + len(claim.exhausted),
    }


def _score(good: dict[str, bytes], model: ServingModel) -> list[ledger.ScoredScan]:
    """One forward pass over the scans' pixels: softmax, predicted class, urgent flag each,
    with each scan's mean intensity and contrast (the card's `reference` has the training's)."""
    ids = list(good)
    pixels = np.stack(
        [np.frombuffer(good[sid], np.uint8).reshape(SCAN_SIZE, SCAN_SIZE) for sid in ids]
    )
    probabilities = model.probabilities(pixels)
    predicted, urgent = model.predicted_classes(probabilities), model.is_urgent(probabilities)
    means, contrasts = input_statistics(pixels)
    return [
        ledger.ScoredScan(
            sid, tuple(float(p) for p in row), int(label), bool(flag), float(mean), float(spread)
        )
        for sid, row, label, flag, mean, spread in zip(
            ids, probabilities, predicted, urgent, means, contrasts, strict=True
        )
    ]


def _record_of(model: ServingModel) -> ledger.ModelRecord:
    return ledger.ModelRecord(
        model.version, str(model.directory), model.urgent_threshold, model.card
    )


@app.task(name=CLASSIFY_TASK, bind=True, max_retries=None)  # capped by max_attempts below
def classify(self, job: dict[str, Any]) -> dict[str, int]:  # noqa: ANN001 - bound Celery task
    """Classify one batch of scans (ids only; pixels come from the ledger).

    Outages (no model yet, database or broker down) are retried `max_attempts` times with
    backoff, then the scans are left waiting in `queued` for the reconciler to re-send.
    """
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
            routing=routing(settings),
        )
        _publish_after_decisions(engine, escalations, job.scan_ids, settings)
        return outcome
    except ledger.Redelivered:
        return _split(job, settings)
    except RETRYABLE as error:
        reason = reason_for(error)
        if self.request.retries >= settings.max_attempts:
            _release(
                engine, job.scan_ids, f"waiting after {self.request.retries} retries: {reason}"
            )
            return {"classified": 0, "urgent": 0, "failed": 0, "waiting": len(job.scan_ids)}
        log.warning("job of %d scans: %s; retrying", len(job.scan_ids), reason)
        raise self.retry(
            exc=TransientError(reason), countdown=backoff(self.request.retries)
        ) from None
    except Exception as error:  # a model or data fault: retrying would fail the same way
        _give_up(engine, job.scan_ids, f"classification failed: {describe(error)}")
        raise


def _publish_after_decisions(
    engine: Engine, escalations: Sequence[Escalation], scan_ids: Sequence[str], settings: Settings
) -> None:
    """After the decision's commit: the urgent studies to the worklist first, then the
    deliveries due now (every SR at once), then a key image render per urgent study. A
    publish lost here is re-sent by the reconciler (escalations, due rows, waiting images)."""
    publish_escalations(escalations, settings)
    publish_deliveries(deliveries.pending_for_scans(engine, scan_ids), settings)
    if sends_key_images(settings):
        urgent = sorted({e.study_id for e in escalations if e.study_id is not None})
        publish_key_image_renders(urgent, settings)


def _split(job: ClassifyJob, settings: Settings) -> dict[str, int]:
    """A batch whose worker was lost: re-send each scan alone, so one bad scan fails alone."""
    for scan_id in job.scan_ids:
        publish_jobs([scan_id], job.priority, settings)
    log.warning("job of %d scans was redelivered; re-sent as single-scan jobs", len(job.scan_ids))
    return {"split": len(job.scan_ids)}


def reason_for(error: BaseException) -> str:
    """A transient failure in one line, without file paths (a missing model names none)."""
    if isinstance(error, ModelNotFoundError):
        return "ModelNotFoundError: no usable model published yet (run `triage train`)"
    return describe(error)


def _release(engine: Engine, scan_ids: Sequence[str], reason: str) -> None:
    """Leave scans waiting in `queued` (not the scans' fault); the reconciler re-sends them."""
    try:
        released = ledger.release(engine, scan_ids, reason)
    except RETRYABLE as error:  # still processing: the reconciler re-sends them when stuck
        log.error("could not release %d scans: %s", len(scan_ids), describe(error))
        return
    log.warning("%d scans left waiting (%d released): %s", len(scan_ids), len(released), reason)


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
