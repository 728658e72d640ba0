"""The producer side, for the CLI and for a hospital system: scans in, jobs out.

    from gateway.intake.client import submit_scans
    submission = submit_scans(["/incoming/ct"], priority="stat")
    submission.queued      # [(scan_id, source), ...]
    submission.repeated    # [(existing scan_id, source), ...]: same SOPInstanceUID as before
    submission.rejected    # [ScanError(source, reason), ...]

Every good scan is recorded in the ledger with its study (status `queued`, pixels included),
a chunk of files at a time, each chunk in one transaction, then published as jobs of
`batch_size` scan ids. Messages carry ids only.
The ledger's schema must be current (`triage db upgrade`); producers never migrate.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from gateway.broker.publish import PublishError, publish_jobs
from gateway.intake.files import IncomingScan, Intake, chunks_of_paths, read_arrays
from imaging.canonical import ScanError
from ledger import orders as order_ledger
from ledger import scans as scan_ledger
from ledger.database import engine_for, require_schema
from ledger.studies import StudyRef, close_studies, own_study_uid
from schemas.errors import describe
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
    opened_studies: frozenset[str] = frozenset()  # held open by this call (`hold`)
    # ready, left to the caller to publish, by the lane each takes (an order may move a scan)
    unpublished: dict[Priority, list[str]] = field(default_factory=dict)


CHUNK_SCANS = 2_048  # scans read, recorded and published together by `submit_scans`


def submit_scans(
    paths: Iterable[str | os.PathLike[str]],
    priority: Priority | str = Priority.routine,
    accession_from_filename: bool = False,
    settings: Settings | None = None,
    study: str | None = None,
) -> Submission:
    """Validate, record and queue the scans in these files and folders.

    DICOM instances go to the study their StudyInstanceUID names; other scans are each a
    study of their own, unless `study` names one for every scan of the call. Files are read,
    recorded and published CHUNK_SCANS scans at a time, so a call of any size runs in bounded
    memory; slices of a shared study (DICOM, or `study`) are held until the call ends, when
    their studies close, so a study that spans chunks is decided once."""
    settings = settings or get_settings()
    priority = check_priority(priority)
    stream = _Stream(Submission(priority=priority.value), priority, settings, study)
    for chunk in chunks_of_paths(paths, settings, accession_from_filename, CHUNK_SCANS):
        stream.add(chunk)
    return stream.finish()


@dataclass
class _Stream:
    """One `submit_scans` call, chunk by chunk: what it did so far, the studies it holds open,
    and the first broker failure (after which chunks are recorded, not published)."""

    submission: Submission
    priority: Priority
    settings: Settings
    study: str | None
    opened: set[str] = field(default_factory=set)
    unpublished: int = 0
    failure: PublishError | None = None

    def add(self, chunk: Intake) -> None:
        shared = [scan for scan in chunk.scans if _in_shared_study(scan, self.study)]
        own = [scan for scan in chunk.scans if not _in_shared_study(scan, self.study)]
        for scans, hold in ((own, False), (shared, True)):
            if scans:
                intake = Intake(scans=scans)
                part = admit(intake, self.priority, self.settings, self.study, hold, False)
                self._merge(part)
        self.submission.rejected += chunk.rejected

    def _merge(self, part: Submission) -> None:
        self.submission.queued += part.queued
        self.submission.repeated += part.repeated
        self.submission.rejected += part.rejected
        self.submission.contradicting += part.contradicting
        self.submission.jobs += part.jobs
        self.opened |= part.opened_studies
        for lane, scan_ids in part.unpublished.items():
            self._publish(scan_ids, lane)

    def _publish(self, scan_ids: list[str], priority: Priority) -> None:
        if not scan_ids:
            return
        if self.failure is None:
            try:
                self.submission.jobs += publish_jobs(scan_ids, priority, self.settings)
            except PublishError as error:
                self.failure = error
            else:
                engine = engine_for(self.settings.resolved_database_url)
                scan_ledger.mark_published(engine, scan_ids)
                return
        self.unpublished += len(scan_ids)

    def finish(self) -> Submission:
        """Close the studies the call held open, publish their slices; PublishError if the
        broker refused any job (everything is recorded: the reconciler re-sends it)."""
        engine = engine_for(self.settings.resolved_database_url)
        closed = close_studies(engine, sorted(self.opened))
        for priority, scan_ids in closed.to_publish.items():
            self._publish(scan_ids, priority)
        if self.failure is not None:
            raise PublishError(
                f"{self.unpublished} scans are recorded as queued but the broker refused their "
                f"jobs ({describe(self.failure.__cause__ or self.failure)}); they will be "
                "re-sent from the ledger (`triage reconcile`)"
            ) from self.failure
        return self.submission


def _in_shared_study(scan: IncomingScan, study: str | None) -> bool:
    """Whether the scan joins a study other scans may join too (held until the call ends)."""
    return study is not None or bool(scan.identity is not None and scan.identity.study_uid)


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
    publish: bool = True,
) -> Submission:
    """Record the intake's scans with their studies in one transaction, then publish the jobs
    of those ready (`hold`: studies stay open, their slices wait for the study to close;
    without `publish`, the ready ones are left in `unpublished` for the caller).

    A scan whose accession has an order from the RIS takes its lane (a STAT order: `stat`),
    or, when that order is cancelled, is failed "order cancelled" and never published."""
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
    submission.opened_studies = admitted.made_receiving
    accession_of = {scan.scan_id: scan.accession for scan in new_scans}
    lanes = order_ledger.apply_to_scans(  # the RIS's orders, if any
        engine, {scan_id: accession_of[scan_id] for scan_id in admitted.new}
    )
    held = set(admitted.held)
    ready = [scan_id for scan_id in admitted.new if scan_id not in held]
    for lane in sorted({lanes.get(scan_id, priority) for scan_id in ready} - {None}, reverse=True):
        # a DICOM instance of a receiving study waits: no publish, no second write
        batch = [scan_id for scan_id in ready if lanes.get(scan_id, priority) == lane]
        if not publish:
            submission.unpublished[Priority(lane)] = batch
            continue
        submission.jobs += publish_jobs(batch, lane, settings)
        scan_ledger.mark_published(engine, batch)
    return submission


def new_scan(scan: IncomingScan, study: str | None) -> scan_ledger.NewScan:
    """The ledger's view of an incoming scan: its study by DICOM identity, by the caller's
    study key, or none (a study of its own)."""
    identity = scan.identity
    accession = (identity.accession if identity else None) or scan.accession
    if identity is not None and identity.study_uid:
        ref = StudyRef(
            identity.study_uid,
            accession,
            identity.patient_id,
            patient_issuer=identity.patient_issuer,
            patient_name=identity.patient_name,
            study_date=identity.study_date,
            patient_modules=identity.modules,
        )
    elif study is not None:
        ref = StudyRef(own_study_uid(study), accession)
    else:
        ref = None
    return scan_ledger.NewScan(
        str(uuid.uuid4()), scan.pixels.tobytes(), accession, scan.source, ref, identity
    )
