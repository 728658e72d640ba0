"""The broker contract: task and queue names, routing and serializer settings.

Producers (the gateway, the reconciler) publish jobs by these names without importing the
worker; the Celery app in `worker/app.py` is configured from the same `CELERY_CONFIG`.

Queues (one per kind of work; Redis priorities are approximate, separate queues are not):
- `urgent`  escalations of class-2 results -> the worklist; its own worker, no model needed
- `stat`    classification of scans the hospital flagged urgent up front, and the key image
            of each urgent study (`render_key_image`: it needs the model, and an urgent study's
            image must not wait behind the routine backlog)
- `scans`   routine classification; `-Q stat,scans` serves `stat` first
            (queue_order_strategy=priority)
- `deliveries` results sent back to the hospital (PACS, RIS, FHIR): its own worker, so a slow
            destination never delays escalations
"""

from __future__ import annotations

from typing import Any

from kombu import Queue

from schemas.messages import Priority

# a task's name is the module it lives in and its function name
CLASSIFY_TASK = "worker.tasks.classify"
ESCALATE_TASK = "worker.tasks.escalate"
RECONCILE_TASK = "worker.tasks.reconcile"
DELIVER_TASK = "worker.delivering.deliver"
RENDER_KEY_IMAGE_TASK = "worker.rendering.render_key_image"
PURGE_TASK = "worker.retention.purge"
URGENT_QUEUE, STAT_QUEUE, ROUTINE_QUEUE = "urgent", "stat", "scans"
DELIVERIES_QUEUE = "deliveries"
CLASSIFY_QUEUES = {STAT_QUEUE, ROUTINE_QUEUE}
QUEUE_OF_PRIORITY = {Priority.stat: STAT_QUEUE, Priority.routine: ROUTINE_QUEUE}
ALL_QUEUES = (STAT_QUEUE, ROUTINE_QUEUE, URGENT_QUEUE)


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any) -> dict:
    """Classification goes to `stat` or `scans` by the job's priority, key images to `stat`;
    escalations, the reconciler and the retention pass to `urgent`; deliveries to
    `deliveries`."""
    if name in (ESCALATE_TASK, RECONCILE_TASK, PURGE_TASK):
        return {"queue": URGENT_QUEUE}
    if name == DELIVER_TASK:
        return {"queue": DELIVERIES_QUEUE}
    if name == RENDER_KEY_IMAGE_TASK:
        return {"queue": STAT_QUEUE}
    if name == CLASSIFY_TASK:
        job = (args or [None])[0] or (kwargs or {}).get("job") or {}
        return {"queue": QUEUE_OF_PRIORITY[Priority(job.get("priority", Priority.routine))]}
    return {}


# a deliver job sends one outbox row under one deadline per exchange (gateway/outbox/deadline.py):
# its time limits bound everything else it does, and the row's lease (ledger/deliveries.py)
# outlives the hard limit, so a row is never given to a second job while the first may run
DELIVER_SOFT_TIME_LIMIT_S = 60
DELIVER_TIME_LIMIT_S = 90

CELERY_CONFIG: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "event_serializer": "json",
    "task_ignore_result": True,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "worker_proc_alive_timeout": 60.0,  # importing TensorFlow takes longer than the 4 s default
    "task_queues": tuple(
        Queue(name) for name in (URGENT_QUEUE, STAT_QUEUE, ROUTINE_QUEUE, DELIVERIES_QUEUE)
    ),
    "task_default_queue": ROUTINE_QUEUE,
    "task_routes": (route_task,),
    "broker_transport_options": {"queue_order_strategy": "priority", "visibility_timeout": 3600},
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
    "task_annotations": {
        DELIVER_TASK: {
            "soft_time_limit": DELIVER_SOFT_TIME_LIMIT_S,
            "time_limit": DELIVER_TIME_LIMIT_S,
        }
    },
}
