"""The reconciler's plan: the ledger says what must still happen; re-send what Redis lost.

Publishing is done by callables the caller passes in (`worker/reconcile.py` wires the
broker). Run by `triage reconcile` and every `TRIAGE_RECONCILE_EVERY_SECONDS` by the beat embedded in
the urgent worker (`celery -A worker worker -Q urgent -B`). Each run reads ids and times only
(never pixels) of at most `SCANS_PER_RUN` unfinished scans, oldest first, and:

- queues slices left `held` in a study no longer receiving (see `studies.close_idle`);
- fails a scan stuck in `processing` whose worker was lost `max_attempts` times (a poison scan
  that keeps killing its worker), with the reason, instead of sending it again;
- re-publishes scans stuck in `queued` or `processing` (untouched for `stuck_after_seconds`:
  their message was lost with Redis, or with a killed worker);
- moves ahead routine scans that have waited half of `max_wait_seconds`: they are re-published
  to the `stat` queue, which workers serve first, so none waits past the cap behind new routine
  work (the original message becomes a no-op: classification is idempotent);
- re-sends escalations of urgent results missing from the worklist when the `urgent` queue is
  empty (the message was lost); the worklist insert is idempotent;
- pages again worklist cases whose page never went out (`notified_at` unset for longer than
  one reconcile period: the urgent worker died between the worklist row and recording the
  page; the webhook is an outbox delivery, re-sent with the other due rows);
- has the key image of an urgent study rendered (`render`) when it decides the study itself
  (it runs where no model does), and again, at most once per reconcile period, for a key image
  still waiting for its saliency map (the render job was lost, or its worker died).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger import deliveries, studies, worklist
from ledger import scans as scan_ledger
from schemas.messages import Escalation, Priority
from schemas.settings import Settings
from schemas.tables import as_utc, utcnow

log = logging.getLogger(__name__)

SCANS_PER_RUN = 20_000
MOVE_AHEAD_AT = 0.5  # fraction of max_wait_seconds after which a routine scan is moved ahead

PublishJobs = Callable[[Sequence[str], Priority], None]
PublishEscalation = Callable[[Escalation], None]
Page = Callable[[Sequence[str]], object]  # (scan ids) -> pages the clinicians
Decide = Callable[[Sequence[str]], list[Escalation]]  # (scan ids) -> their studies decided
Render = Callable[[Sequence[str]], object]  # (study ids) -> their key images rendered


@dataclass
class ReconcileReport:
    """What one run did, in scans (escalations: worklist entries re-sent)."""

    republished: int = 0
    moved_ahead: int = 0
    failed: int = 0
    escalations: int = 0
    repaged: int = 0
    studies_closed: int = 0
    held_requeued: int = 0  # slices held in a study no longer receiving, queued again
    studies_decided: int = 0
    deliveries: int = 0  # outbox rows re-sent (worker/reconcile.py)
    key_images: int = 0  # studies whose key image render was published
    failed_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        counts = asdict(self)
        counts.pop("failed_ids")
        return counts


@dataclass(frozen=True)
class _Plan:
    fail: list[str]
    routine: list[str]
    stat: list[str]
    moved_ahead: int


def reconcile(
    engine: Engine,
    settings: Settings,
    publish_jobs: PublishJobs,
    publish_escalation: PublishEscalation,
    urgent_queue_empty: bool,
    now: datetime | None = None,
    page: Page | None = None,
    decide: Decide | None = None,
    render: Render | None = None,
) -> ReconcileReport:
    """One reconciliation pass over the ledger; publishing is done by the given callables."""
    now = now or utcnow()
    report = ReconcileReport()
    decided = _close_and_decide(
        engine, settings, now, publish_jobs, publish_escalation, decide, report
    )
    if render is not None:
        _render_key_images(engine, settings, now, decided, render, report)
    plan = _plan(engine, settings, now)
    report.failed, report.failed_ids = len(plan.fail), plan.fail
    if plan.fail:
        reason = (
            f"gave up after {settings.max_attempts} attempts: its worker was lost each time "
            f"(left in processing for over {settings.stuck_after_seconds:g} s)"
        )
        scan_ledger.mark_failed(engine, plan.fail, reason)
        log.error("marked %d scans failed: %s", len(plan.fail), reason)
    for priority, ids in ((Priority.stat, plan.stat), (Priority.routine, plan.routine)):
        if ids:
            publish_jobs(ids, priority)
            scan_ledger.mark_published(engine, ids, now)
    report.republished = len(plan.stat) + len(plan.routine) - plan.moved_ahead
    report.moved_ahead = plan.moved_ahead
    if urgent_queue_empty:
        cutoff = now - timedelta(seconds=settings.stuck_after_seconds)
        for escalation in worklist.unlisted_before(engine, cutoff, SCANS_PER_RUN):
            publish_escalation(escalation)
            report.escalations += 1
    if page is not None:
        grace = timedelta(seconds=settings.reconcile_every_seconds)
        unpaged = worklist.unpaged_cases(engine, now - grace, SCANS_PER_RUN)
        if unpaged:
            page(unpaged)
        report.repaged = len(unpaged)
    if any(report.as_dict().values()):
        log.warning("reconciled: %s", ", ".join(f"{k} {v}" for k, v in report.as_dict().items()))
    return report


def _close_and_decide(
    engine: Engine,
    settings: Settings,
    now: datetime,
    publish_jobs: PublishJobs,
    publish_escalation: PublishEscalation,
    decide: Decide | None,
    report: ReconcileReport,
) -> list[Escalation]:
    """Close studies a receiver left open (idle for twice the idle time: it died), and decide
    closed studies whose slices are all finished but have no decision (their job's worker
    was lost before it committed); returns the escalations of those decided."""
    idle_before = now - timedelta(seconds=2 * settings.study_idle_seconds)
    closed = studies.close_idle(engine, idle_before, SCANS_PER_RUN)
    for priority, ids in closed.to_publish.items():
        if ids:
            publish_jobs(ids, priority)
            scan_ledger.mark_published(engine, ids, now)
    report.studies_closed = closed.studies
    report.held_requeued = closed.requeued
    if decide is None:
        return []
    grace = now - timedelta(seconds=settings.reconcile_every_seconds)
    undecided = studies.undecided_before(engine, grace, SCANS_PER_RUN)
    if not undecided:
        return []
    escalations = decide(undecided)
    for escalation in escalations:
        publish_escalation(escalation)
    report.studies_decided = len(undecided)
    return escalations


def _render_key_images(
    engine: Engine,
    settings: Settings,
    now: datetime,
    decided: Sequence[Escalation],
    render: Render,
    report: ReconcileReport,
) -> None:
    """Key images to render: those of the urgent studies just decided here, and those that
    have waited a reconcile period since their decision or their last render."""
    grace = now - timedelta(seconds=settings.reconcile_every_seconds)
    waiting = deliveries.waiting_key_images(engine, grace, now, SCANS_PER_RUN)
    study_ids = sorted({*waiting, *(e.study_id for e in decided if e.study_id is not None)})
    if study_ids:
        render(study_ids)
    report.key_images = len(study_ids)


def _plan(engine: Engine, settings: Settings, now: datetime) -> _Plan:
    """Sort the unfinished scans old enough to matter into fail / re-send / move ahead."""
    stuck_cutoff = now - timedelta(seconds=settings.stuck_after_seconds)
    move_after = timedelta(seconds=settings.max_wait_seconds * MOVE_AHEAD_AT)
    wait_cutoff = now - move_after
    scans = scan_ledger.scans
    # received_at <= published_at <= started_at: only scans received before the later cutoff
    # can be stuck or overdue, and the (status, received_at) index finds them
    query = (
        sa.select(
            scans.c.id,
            scans.c.status,
            scans.c.priority,
            scans.c.attempts,
            scans.c.received_at,
            scans.c.published_at,
            scans.c.started_at,
        )
        .where(
            scans.c.status.in_(("queued", "processing")),
            scans.c.received_at < max(stuck_cutoff, wait_cutoff),
        )
        .order_by(scans.c.received_at)
        .limit(SCANS_PER_RUN)
    )
    fail: list[str] = []
    routine: list[str] = []
    stat: list[str] = []
    moved_ahead = 0
    with engine.begin() as connection:
        rows = connection.execute(query).all()
    for row in rows:
        received = as_utc(row.received_at)
        published = as_utc(row.published_at)
        touched = max(t for t in (received, published, as_utc(row.started_at)) if t)
        overdue = received < wait_cutoff
        moving = (
            row.status == "queued"
            and row.priority == Priority.routine
            and overdue
            and (published is None or published < received + move_after)
        )
        stuck = touched < stuck_cutoff
        if stuck and row.status == "processing" and row.attempts >= settings.max_attempts:
            fail.append(row.id)
        elif stuck or moving:
            (stat if row.priority == Priority.stat or overdue else routine).append(row.id)
            moved_ahead += moving
    return _Plan(fail, routine, stat, moved_ahead)
