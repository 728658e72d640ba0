"""Jobs onto the broker by task name: the edge and the reconciler publish without the worker.

Names, queues and routing come from the contract in `schemas/queues.py`; one producer app per
broker URL (its connection pool reused across calls) sends them as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from celery import Celery

from gateway.broker.server import broker_url
from schemas.errors import describe
from schemas.messages import ClassifyJob, Escalation, Priority
from schemas.queues import (
    CELERY_CONFIG,
    CLASSIFY_TASK,
    DELIVER_TASK,
    ESCALATE_TASK,
    RENDER_KEY_IMAGE_TASK,
)
from schemas.settings import Settings


class PublishError(RuntimeError):
    """Scans are in the ledger but their jobs did not reach the broker."""


@lru_cache(maxsize=4)
def producer_app(url: str) -> Celery:
    """A Celery app that only publishes, to the broker at `url`."""
    app = Celery("triage-producer", broker=url, set_as_current=False)
    app.conf.update(CELERY_CONFIG)
    return app


def publish_jobs(scan_ids: Sequence[str], priority: Priority | str, settings: Settings) -> int:
    """Publish classification jobs of `batch_size` ids each; returns how many."""
    priority = Priority(priority)
    batches = [
        list(scan_ids[start : start + settings.batch_size])
        for start in range(0, len(scan_ids), settings.batch_size)
    ]
    if not batches:
        return 0
    app = producer_app(broker_url(settings))
    try:
        with app.producer_or_acquire() as producer:
            for batch in batches:
                job = ClassifyJob(scan_ids=batch, priority=priority)
                app.send_task(CLASSIFY_TASK, args=[job.model_dump(mode="json")], producer=producer)
    except Exception as error:
        raise PublishError(
            f"{len(scan_ids)} scans are recorded as queued but the broker refused their jobs "
            f"({describe(error)}); they will be re-sent from the ledger (`triage reconcile`)"
        ) from error
    return len(batches)


def publish_escalations(escalations: Sequence[Escalation], settings: Settings) -> None:
    """All of a job's escalations in one message: one broker round trip, one worklist write."""
    if escalations:
        app = producer_app(broker_url(settings))
        payload = [item.model_dump(mode="json") for item in escalations]
        app.send_task(ESCALATE_TASK, args=[payload])


def publish_deliveries(
    delivery_ids: Sequence[str], settings: Settings, countdown: float | None = None
) -> None:
    """One `deliver` job per outbox row (on the `deliveries` queue), optionally delayed."""
    if delivery_ids:
        app = producer_app(broker_url(settings))
        with app.producer_or_acquire() as producer:
            for delivery_id in delivery_ids:
                app.send_task(
                    DELIVER_TASK, args=[delivery_id], countdown=countdown, producer=producer
                )


def publish_key_image_renders(study_ids: Sequence[str], settings: Settings) -> None:
    """One `render_key_image` job per urgent study (on the `stat` queue: it needs the model)."""
    if study_ids:
        app = producer_app(broker_url(settings))
        with app.producer_or_acquire() as producer:
            for study_id in study_ids:
                app.send_task(RENDER_KEY_IMAGE_TASK, args=[study_id], producer=producer)
