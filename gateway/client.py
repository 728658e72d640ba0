"""The producer side, for the CLI and for a hospital system: scans in, jobs out.

    from gateway.client import submit_scans
    submission = submit_scans(["/incoming/ct"], priority="stat")
    submission.queued      # [(scan_id, source), ...]
    submission.rejected    # [ScanError(source, reason), ...]

Every good scan is recorded in the ledger (status `queued`, pixels included) in one
transaction, then published as jobs of `batch_size` scan ids. Messages carry ids only.
The ledger's schema must be current (`triage db upgrade`); producers never migrate.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from gateway.intake import Intake, read_arrays, read_paths
from gateway.publish import PublishError, publish_jobs
from imaging.canonical import ScanError
from ledger import scans as scan_ledger
from ledger.database import engine_for, require_schema
from schemas.messages import Priority, check_priority
from schemas.settings import Settings, get_settings

__all__ = ["PublishError", "Submission", "admit", "submit_images", "submit_scans"]


@dataclass
class Submission:
    """What one submission did: scans queued (id, source), inputs rejected, jobs published."""

    priority: str
    queued: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[ScanError] = field(default_factory=list)
    jobs: int = 0


def submit_scans(
    paths: Iterable[str | os.PathLike[str]],
    priority: Priority | str = Priority.routine,
    accession_from_filename: bool = False,
    settings: Settings | None = None,
) -> Submission:
    """Validate, record and queue the scans in these files and folders."""
    settings = settings or get_settings()
    priority = check_priority(priority)
    return admit(read_paths(paths, settings, accession_from_filename), priority, settings)


def submit_images(
    images: Iterable[np.ndarray],
    accessions: Iterable[str | None] | None = None,
    priority: Priority | str = Priority.routine,
    settings: Settings | None = None,
) -> Submission:
    """Validate, record and queue in-memory images (any size, grayscale or colour)."""
    settings = settings or get_settings()
    priority = check_priority(priority)
    return admit(read_arrays(images, settings, accessions), priority, settings)


def admit(intake: Intake, priority: Priority | str, settings: Settings) -> Submission:
    """Record the intake's scans in one transaction, then publish their jobs."""
    priority = check_priority(priority)
    engine = engine_for(settings.resolved_database_url)
    require_schema(engine)
    new_scans = [
        scan_ledger.NewScan(str(uuid.uuid4()), scan.pixels.tobytes(), scan.accession, scan.source)
        for scan in intake.scans
    ]
    scan_ledger.add_scans(engine, new_scans, priority)
    submission = Submission(
        priority=priority.value,
        queued=[(scan.scan_id, scan.source or "") for scan in new_scans],
        rejected=list(intake.rejected),
    )
    ids = [scan.scan_id for scan in new_scans]
    submission.jobs = publish_jobs(ids, priority, settings)
    scan_ledger.mark_published(engine, ids)
    return submission
