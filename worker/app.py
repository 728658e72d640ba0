"""The Celery app: its configuration (the contract in `schemas/queues.py`), the beat (the
reconciler, retention), and the model loaded after fork.

Results live in the database, so there is no result backend. Late acks, prefetch 1 and
requeue-on-worker-lost give at-least-once delivery; tasks are idempotent and count attempts
in the ledger, so a scan that keeps killing its worker ends `failed` instead of looping.
Workers name what they serve: `-Q urgent` (escalations and the reconciler, no model),
`-Q stat,scans` (classification and key images, `stat` first: both need the model),
`-Q deliveries` (results back to the hospital). With no -Q a worker serves all four.
Each task lives in the module its registered name says (`schemas/queues.py`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals

from gateway.broker.server import broker_url
from schemas.queues import CELERY_CONFIG, CLASSIFY_QUEUES, PURGE_TASK, RECONCILE_TASK
from schemas.settings import get_settings

log = logging.getLogger(__name__)

app = Celery(
    "triage",
    include=["worker.tasks", "worker.delivering", "worker.rendering", "worker.retention"],
)
app.conf.update(CELERY_CONFIG)
# The broker URL is computed on first use, and reading it never starts the embedded Redis:
# a worker starts it at boot (below), producers when they publish (gateway/broker/publish.py).
app.add_defaults(lambda: {"broker_url": broker_url(get_settings(), start=False)})

_serves_classification = True


@app.on_after_configure.connect
def _schedule_reconciler(sender: Celery, **_: Any) -> None:
    """The beat (`-B` on the urgent worker) runs the reconciler every reconcile_every_seconds."""
    every = get_settings().reconcile_every_seconds
    sender.add_periodic_task(every, sender.signature(RECONCILE_TASK), expires=every)


@app.on_after_configure.connect
def _schedule_retention(sender: Celery, **_: Any) -> None:
    """The same beat runs a bounded retention pass every purge_every_seconds."""
    every = get_settings().purge_every_seconds
    sender.add_periodic_task(every, sender.signature(PURGE_TASK), expires=every)


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


@signals.worker_init.connect
def _share_cores(sender: Any, **_: Any) -> None:
    """Each pool process gets cores / concurrency TensorFlow threads (in the parent, before
    fork), unless TF_NUM_INTRAOP_THREADS says otherwise: with TensorFlow's default of one
    thread per core in every process, N processes would oversubscribe the CPU N times."""
    concurrency = getattr(sender, "concurrency", 1)  # an int here ("auto" is resolved later)
    if (
        isinstance(concurrency, int)
        and concurrency > 1
        and "TF_NUM_INTRAOP_THREADS" not in os.environ
    ):
        threads = max(1, len(os.sched_getaffinity(0)) // concurrency)
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        log.info("%d pool processes: %d TensorFlow threads each", concurrency, threads)


@signals.worker_process_init.connect
def _load_model_after_fork(**_: Any) -> None:
    """Load the model in each child (TensorFlow is not fork-safe); urgent-only workers skip it."""
    if not _serves_classification:
        return
    from worker.model import current_model

    model = current_model(get_settings())
    log.info("model %s ready", model.version)
