"""The Celery app: configuration, queues and routing, and the model loaded after fork.

Queues (one per kind of work; Redis priorities are approximate, separate queues are not):
- `urgent`  escalations of class-2 results -> the worklist; its own worker, no model needed:
            `celery -A worker worker -Q urgent`
- `stat`    classification of scans the hospital flagged urgent up front
- `scans`   routine classification: `celery -A worker worker -Q stat,scans` serves `stat` first
            (queue_order_strategy=priority). With no -Q a worker serves all three, in that order.

Results live in the database, so there is no result backend. Late acks, prefetch 1 and
requeue-on-worker-lost give at-least-once delivery; tasks are idempotent and count attempts
in the ledger, so a scan that keeps killing its worker ends `failed` instead of looping.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from kombu import Queue

from schemas.settings import get_settings
from worker.broker import broker_url

log = logging.getLogger(__name__)

CLASSIFY_TASK = "worker.tasks.classify"
ESCALATE_TASK = "worker.tasks.escalate"
RECONCILE_TASK = "worker.tasks.reconcile"
URGENT_QUEUE, STAT_QUEUE, ROUTINE_QUEUE = "urgent", "stat", "scans"
CLASSIFY_QUEUES = {STAT_QUEUE, ROUTINE_QUEUE}


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any) -> dict:
    """Classification goes to `stat` or `scans` by the job's priority; escalations and the
    reconciler to `urgent`."""
    if name in (ESCALATE_TASK, RECONCILE_TASK):
        return {"queue": URGENT_QUEUE}
    if name == CLASSIFY_TASK:
        job = (args or [None])[0] or (kwargs or {}).get("job") or {}
        return {"queue": STAT_QUEUE if job.get("priority") == "stat" else ROUTINE_QUEUE}
    return {}


app = Celery("triage", include=["worker.tasks"])
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    event_serializer="json",
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_proc_alive_timeout=60.0,  # importing TensorFlow alone takes ~5 s here
    task_queues=(Queue(URGENT_QUEUE), Queue(STAT_QUEUE), Queue(ROUTINE_QUEUE)),
    task_default_queue=ROUTINE_QUEUE,
    task_routes=(route_task,),
    broker_transport_options={"queue_order_strategy": "priority", "visibility_timeout": 3600},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
# The broker URL is computed on first use, and reading it never starts the embedded Redis:
# a worker starts it at boot (below), producers when they publish (worker/client.py).
app.add_defaults(lambda: {"broker_url": broker_url(get_settings(), start=False)})

_serves_classification = True


@app.on_after_configure.connect
def _schedule_reconciler(sender: Celery, **_: Any) -> None:
    """The beat (`-B` on the urgent worker) runs the reconciler every reconcile_every_seconds."""
    every = get_settings().reconcile_every_seconds
    sender.add_periodic_task(every, sender.signature(RECONCILE_TASK), expires=every)


@signals.worker_init.connect
def _start_embedded_broker(**_: Any) -> None:
    """With no TRIAGE_REDIS_URL, make sure the embedded Redis runs before the worker connects."""
    broker_url(get_settings())


@signals.worker_init.connect
def _note_queues(sender: Any, **_: Any) -> None:
    """Remember whether this worker classifies at all (in the parent, after -Q, before fork)."""
    global _serves_classification
    consuming = set(sender.app.amqp.queues.consume_from)
    _serves_classification = bool(consuming & CLASSIFY_QUEUES)
    log.info("worker %s serves %s", sender.hostname, ", ".join(sorted(consuming)))


@signals.worker_process_init.connect
def _load_model_after_fork(**_: Any) -> None:
    """Load the model in each child (TensorFlow is not fork-safe); urgent-only workers skip it."""
    if not _serves_classification:
        return
    from worker.model import current_model

    model = current_model(get_settings())
    log.info("model %s ready", model.version)
