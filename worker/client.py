"""The producer side, for the CLI and for a hospital system: scans in, jobs out.

    from worker.client import submit_scans
    submission = submit_scans(["/incoming/ct"], priority="stat")
    submission.queued      # [(scan_id, source), ...]
    submission.rejected    # [ScanError(source, reason), ...]

Every good scan is recorded in the ledger (status `queued`, pixels included) in one
transaction, then published as jobs of `batch_size` scan ids. Messages carry ids only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from schemas.messages import ClassifyJob
from schemas.scans import ScanError
from schemas.settings import Settings, get_settings
from worker import ledger
from worker.broker import broker_url
from worker.database import engine_for, ensure_schema
from worker.ingest import Intake, read_arrays, read_paths

PRIORITIES = ("routine", "stat")


class PublishError(RuntimeError):
    """Scans are in the ledger but their jobs did not reach the broker."""


@dataclass
class Submission:
    """What one submission did: scans queued (id, source), inputs rejected, jobs published."""

    priority: str
    queued: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[ScanError] = field(default_factory=list)
    jobs: int = 0


def submit_scans(
    paths: Iterable[str | os.PathLike[str]],
    priority: str = "routine",
    accession_from_filename: bool = False,
    settings: Settings | None = None,
) -> Submission:
    """Validate, record and queue the scans in these files and folders."""
    settings = settings or get_settings()
    _check_priority(priority)
    return admit(read_paths(paths, settings, accession_from_filename), priority, settings)


def submit_images(
    images: Iterable[np.ndarray],
    accessions: Iterable[str | None] | None = None,
    priority: str = "routine",
    settings: Settings | None = None,
) -> Submission:
    """Validate, record and queue in-memory images (any size, grayscale or colour)."""
    settings = settings or get_settings()
    _check_priority(priority)
    return admit(read_arrays(images, settings, accessions), priority, settings)


def admit(intake: Intake, priority: str, settings: Settings) -> Submission:
    """Record the intake's scans in one transaction, then publish their jobs."""
    _check_priority(priority)
    engine = engine_for(settings.resolved_database_url)
    ensure_schema(engine)
    new_scans = [
        ledger.NewScan(str(uuid.uuid4()), scan.pixels.tobytes(), scan.accession, scan.source)
        for scan in intake.scans
    ]
    ledger.add_scans(engine, new_scans, priority)
    submission = Submission(
        priority=priority,
        queued=[(scan.scan_id, scan.source or "") for scan in new_scans],
        rejected=list(intake.rejected),
    )
    ids = [scan.scan_id for scan in new_scans]
    submission.jobs = publish_jobs(ids, priority, settings)
    ledger.mark_published(engine, ids)
    return submission


def publish_jobs(scan_ids: Sequence[str], priority: str, settings: Settings) -> int:
    """Publish classification jobs of `batch_size` ids each; returns how many."""
    from worker.app import app
    from worker.tasks import classify

    batches = [
        scan_ids[start : start + settings.batch_size]
        for start in range(0, len(scan_ids), settings.batch_size)
    ]
    if not batches:
        return 0
    try:
        # an explicit connection: the settings of this call, not the app's first ones
        with app.connection_for_write(broker_url(settings)) as connection:
            producer = app.amqp.Producer(connection)
            for batch in batches:
                job = ClassifyJob(scan_ids=list(batch), priority=priority)
                classify.apply_async(args=[job.model_dump(mode="json")], producer=producer)
    except Exception as error:
        from worker.tasks import describe

        raise PublishError(
            f"{len(scan_ids)} scans are recorded as queued but the broker refused their jobs "
            f"({describe(error)}); they will be re-sent from the ledger (`triage reconcile`)"
        ) from error
    return len(batches)


def _check_priority(priority: str) -> None:
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}: use routine or stat")
