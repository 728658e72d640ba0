"""The retention task: the urgent worker's beat runs one bounded pass every
`purge_every_seconds` (the rules are in `ledger/retention.py`).

It runs on the `urgent` queue because that worker carries the beat, holds no model and is
idle between escalations; each run stops after BATCHES_PER_RUN transactions, so an escalation
that arrives meanwhile waits for at most that much work, and the next run resumes the pixel
walk where this one stopped (the position is kept in the broker's retention record,
`gateway/operations/retention_report.py`, with the counts for `triage stats` and the metrics).
A separate task rather than a step of the reconciler: retention has its own period and
budget, and a slow pass never delays re-sending what is stuck.
"""

from __future__ import annotations

import logging

from gateway.broker.server import broker_url, redis_client
from gateway.operations.retention_report import read_state, record_pass
from ledger import retention
from ledger.database import engine_for
from schemas.queues import PURGE_TASK
from schemas.settings import Settings, get_settings
from schemas.tables import utcnow
from worker.app import app

log = logging.getLogger(__name__)
BATCHES_PER_RUN = 50  # transactions of up to ledger.retention.BATCH_ROWS rows each


def run_purge(
    settings: Settings, max_batches: int | None = BATCHES_PER_RUN
) -> retention.PurgeReport:
    """One retention pass on the configured ledger, resumed and recorded on the broker."""
    client = redis_client(broker_url(settings))
    now = utcnow()
    report = retention.purge(
        engine_for(settings.resolved_database_url),
        settings.keep_pixels_days,
        settings.keep_results_days,
        now=now,
        max_batches=max_batches,
        resume_after=read_state(client).resume_after,
    )
    record_pass(client, report, now)
    log.info(
        "retention: %d pixel rows, %d key images, %d scans, %d studies removed in %d batches%s",
        report.pixels, report.key_images, report.scans, report.studies, report.batches,
        "" if report.finished else " (more next run)",
    )  # fmt: skip
    return report


@app.task(name=PURGE_TASK)
def purge() -> dict[str, object]:
    """One bounded retention pass (counts only in the result and the log)."""
    return run_purge(get_settings()).as_dict()
