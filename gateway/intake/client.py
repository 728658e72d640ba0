"""The producer side, for the CLI and for a hospital system: scans in, jobs out.

    from gateway.intake.client import submit_scans
    submission = submit_scans(["/incoming/ct"], priority="stat")
    submission.queued      # [(scan_id, source), ...]
    submission.repeated    # [(existing scan_id, source), ...]: same SOPInstanceUID as before
    submission.rejected    # [ScanError(source, reason), ...]

Every good scan is recorded in the ledger with its study (status `queued`, pixels included) in
one transaction, then published as jobs of `batch_size` scan ids. Messages carry ids only.
The ledger's schema must be current (`triage db upgrade`); producers never migrate.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from gateway.broker.publish import PublishError, publish_jobs
from gateway.intake.files import IncomingScan, Intake, read_arrays, read_paths
from imaging.canonical import ScanError
from ledger import scans as scan_ledger
from ledger.database import engine_for, require_schema
from ledger.studies import StudyRef, own_study_uid
from schemas.messages import Priority, check_priority
from schemas.settings import Settings, get_settings

__all__ = ["PublishError", "Submission", "admit", "submit_images", "submit_scans"]


@dataclass
class Submission:
    """What one submission did: scans queued (id, source), instances received before
    (existing id, source), inputs rejected, jobs published."""

    priority: str
    queued: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[ScanError] = field(default_factory=list)
    jobs: int = 0
    repeated: list[tuple[str, str]] = field(default_factory=list)
    # instances refused because their patient contradicts their study's (also in `rejected`)
    contradicting: list[ScanError] = field(default_factory=list)


def submit_scans(
    paths: Iterable[str | os.PathLike[str]],
    priority: Priority | str = Priority.routine,
    accession_from_filename: bool = False,
    settings: Settings | None = None,
    study: str | None = None,
) -> Submission:
    """Validate, record and queue the scans in these files and folders.

    DICOM instances go to the study their StudyInstanceUID names; other scans are each a
    study of their own, unless `study` names one for every scan of the call."""
    settings = settings or get_settings()
    priority = check_priority(priority)
    intake = read_paths(paths, settings, accession_from_filename)
    return admit(intake, priority, settings, study)


def submit_images(
    images: Iterable[np.ndarray],
    accessions: Iterable[str | None] | None = None,
    priority: Priority | str = Priority.routine,
    settings: Settings | None = None,
    study: str | None = None,
) -> Submission:
    """Validate, record and queue in-memory images (any size, grayscale or colour); each is
    a study of its own unless `study` names one for all of them."""
    settings = settings or get_settings()
    priority = check_priority(priority)
    return admit(read_arrays(images, settings, accessions), priority, settings, study)


def admit(
    intake: Intake,
    priority: Priority | str,
    settings: Settings,
    study: str | None = None,
    hold: bool = False,
) -> Submission:
    """Record the intake's scans with their studies in one transaction, then publish the jobs
    of those ready (`hold`: studies stay open, their slices wait for the study to close)."""
    priority = check_priority(priority)
    engine = engine_for(settings.resolved_database_url)
    require_schema(engine)
    new_scans = [new_scan(scan, study) for scan in intake.scans]
    admitted = scan_ledger.add_scans(engine, new_scans, priority, hold=hold)
    sources = {scan.scan_id: scan.source or "" for scan in new_scans}
    submission = Submission(
        priority=priority.value,
        queued=[(scan_id, sources[scan_id]) for scan_id in admitted.new],
        rejected=list(intake.rejected),
        repeated=[
            (existing, new_scans[index].source or "")
            for index, existing in sorted(admitted.repeated.items())
        ],
    )
    submission.contradicting = [
        ScanError(new_scans[index].source or "", reason)
        for index, reason in sorted(admitted.contradicting.items())
    ]
    submission.rejected += submission.contradicting
    held = set(admitted.held)
    ready = [scan_id for scan_id in admitted.new if scan_id not in held]
    if ready:  # a DICOM instance of a receiving study waits: no publish, no second write
        submission.jobs = publish_jobs(ready, priority, settings)
        scan_ledger.mark_published(engine, ready)
    return submission


def new_scan(scan: IncomingScan, study: str | None) -> scan_ledger.NewScan:
    """The ledger's view of an incoming scan: its study by DICOM identity, by the caller's
    study key, or none (a study of its own)."""
    identity = scan.identity
    accession = (identity.accession if identity else None) or scan.accession
    if identity is not None and identity.study_uid:
        ref = StudyRef(identity.study_uid, accession, identity.patient_id, identity.patient_issuer)
    elif study is not None:
        ref = StudyRef(own_study_uid(study), accession)
    else:
        ref = None
    return scan_ledger.NewScan(
        str(uuid.uuid4()), scan.pixels.tobytes(), accession, scan.source, ref, identity
    )
