"""The reconciler's rules against a real ledger (SQLite and PostgreSQL); publishing is recorded.

tests/integration/test_faults.py runs the same code against real Redis and worker processes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from ledger import reads, studies, worklist
from ledger import scans as ledger
from ledger.database import create_ledger_engine, upgrade_schema
from ledger.reconcile import reconcile
from schemas.messages import Escalation
from schemas.model_card import ModelCard
from schemas.settings import get_settings
from schemas.tables import utcnow
from tests.fixtures_model import brightness_scans


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - Engine
    monkeypatch.setenv("TRIAGE_STUCK_AFTER_SECONDS", "60")
    monkeypatch.setenv("TRIAGE_MAX_WAIT_SECONDS", "600")
    monkeypatch.setenv("TRIAGE_MAX_ATTEMPTS", "3")
    get_settings.cache_clear()
    engine = create_ledger_engine(database_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


class Broker:
    """Records what the reconciler publishes."""

    def __init__(self) -> None:
        self.jobs: dict[str, list[str]] = {"routine": [], "stat": []}
        self.escalations: list[str] = []
        self.renders: list[str] = []  # study ids whose key image render was published

    def publish_jobs(self, ids, priority: str) -> None:  # noqa: ANN001
        self.jobs[priority] += list(ids)

    def publish_escalation(self, escalation: Escalation) -> None:
        self.escalations.append(escalation.scan_id)

    def run(self, engine, now_offset_s: float, urgent_queue_empty: bool = True, decide=None):  # noqa: ANN001, ANN201
        return reconcile(
            engine,
            get_settings(),
            self.publish_jobs,
            self.publish_escalation,
            urgent_queue_empty,
            now=utcnow() + timedelta(seconds=now_offset_s),
            decide=decide,
            render=self.renders.extend,
        )


def add(engine, count: int, priority: str = "routine") -> list[str]:  # noqa: ANN001
    new = [
        ledger.NewScan(str(uuid.uuid4()), scan.tobytes(), None, f"file{i}.png")
        for i, scan in enumerate(brightness_scans([60] * count, seed=count))
    ]
    ledger.add_scans(engine, new, priority)
    ledger.mark_published(engine, [scan.scan_id for scan in new])
    return [scan.scan_id for scan in new]


def test_stuck_queued_and_processing_scans_are_sent_again_once_per_timeout(engine) -> None:  # noqa: ANN001
    queued = add(engine, 3)
    processing = add(engine, 2)
    ledger.claim(engine, processing, max_attempts=3)  # its worker then died
    broker = Broker()

    assert broker.run(engine, 30).as_dict() == dict.fromkeys(
        (
            "republished",
            "moved_ahead",
            "failed",
            "escalations",
            "repaged",
            "studies_closed",
            "held_requeued",
            "studies_decided",
            "deliveries",
            "key_images",
        ),
        0,
    )  # not stuck yet
    report = broker.run(engine, 61)
    assert report.republished == 5 and sorted(broker.jobs["routine"]) == sorted(queued + processing)
    assert broker.jobs["stat"] == []
    broker.jobs["routine"].clear()
    assert broker.run(engine, 90).republished == 0  # just re-sent: published_at moved on
    assert reads.status_counts(engine) == {"queued": 3, "processing": 2}


def test_a_scan_that_keeps_killing_its_worker_is_failed_with_the_reason(engine) -> None:  # noqa: ANN001
    poison, healthy = add(engine, 2)
    for _ in range(3):  # three deliveries, three lost workers
        ledger.claim(engine, [poison], max_attempts=3)
    ledger.claim(engine, [healthy], max_attempts=3)
    broker = Broker()

    report = broker.run(engine, 120)

    assert report.failed_ids == [poison] and broker.jobs["routine"] == [healthy]
    found = reads.history(engine, poison)
    assert found["status"] == "failed" and "gave up after 3 attempts" in found["error"]
    assert "worker was lost" in found["error"]
    assert broker.run(engine, 400).failed == 0  # terminal: never sent again


def test_overdue_routine_scans_move_ahead_of_new_routine_work_once(engine) -> None:  # noqa: ANN001
    old = add(engine, 4)
    stat = add(engine, 1, priority="stat")
    broker = Broker()
    # 600 s cap: moved at half of it (300 s); 60 s after publishing they count as stuck too
    with engine.begin() as connection:
        connection.execute(
            ledger.scans.update()
            .where(ledger.scans.c.id.in_(old + stat))
            .values(
                received_at=utcnow() - timedelta(seconds=310),
                published_at=utcnow() - timedelta(seconds=309),
            )
        )
    new = add(engine, 3)

    report = broker.run(engine, 0)

    assert (report.moved_ahead, report.republished) == (4, 1)  # the stat scan: just stuck
    assert sorted(broker.jobs["stat"]) == sorted(old + stat)
    assert broker.jobs["routine"] == [] and not set(new) & set(broker.jobs["stat"])
    assert broker.run(engine, 10).moved_ahead == 0  # moved once, not on every run
    # later, if still waiting (their stat message lost too), they go to `stat` again
    broker.jobs["stat"].clear()
    report = broker.run(engine, 70)
    assert (report.moved_ahead, report.republished) == (0, 8)
    assert sorted(broker.jobs["stat"]) == sorted(old + stat)
    assert sorted(broker.jobs["routine"]) == sorted(new)


def test_escalations_missing_from_the_worklist_are_resent_when_the_urgent_queue_is_empty(
    engine,  # noqa: ANN001
) -> None:
    urgent, calm = add(engine, 2)
    ledger.claim(engine, [urgent, calm], max_attempts=3)
    ledger.record_results(
        engine,
        [
            ledger.ScoredScan(urgent, (0.1, 0.1, 0.8), 2, True),
            ledger.ScoredScan(calm, (0.8, 0.1, 0.1), 0, False),
        ],
        "v1",
        "/models/v1",
        0.5,
        {},
    )
    # results without a decision (a worker of the previous release died between the two)
    card = ModelCard(version="v1", created_at="2026-12-01T00:00:00Z", urgent_threshold=0.5)
    broker = Broker()

    def decide(scan_ids):  # noqa: ANN001, ANN202
        return studies.decide_ready(engine, scan_ids, card, card.version)

    assert broker.run(engine, 5, decide=decide).studies_decided == 0  # the worker may still
    report = broker.run(engine, 61, urgent_queue_empty=False, decide=decide)
    assert report.studies_decided == 2 and broker.escalations == [urgent]  # one urgent study
    assert broker.run(engine, 61, decide=decide).studies_decided == 0  # decided once
    broker.escalations.clear()
    assert broker.run(engine, 61, urgent_queue_empty=False).escalations == 0  # may be in flight
    assert broker.run(engine, 61).escalations == 1 and broker.escalations == [urgent]
    (study_id,) = {e.study_id for e in worklist.unescalated(engine, [urgent])}
    worklist.add_urgent_cases(
        engine,
        [
            Escalation(
                scan_id=urgent,
                study_id=study_id,
                p2=0.8,
                model_version="v1",
                classified_at=utcnow(),
            )
        ],
    )
    assert broker.run(engine, 120).escalations == 0
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(worklist.urgent_cases)) == 1


def test_a_key_image_left_waiting_is_rendered_again_once_per_period_until_stored(
    engine,  # noqa: ANN001
) -> None:
    """The reconciler decides an urgent study (no model where it runs): its SR is due at once,
    its key image waits; the render is published now, then at most once per reconcile period
    while the saliency map is missing, and no more once it is stored."""
    from ledger import deliveries
    from ledger.deliveries import Routing

    urgent, calm = add(engine, 2)
    ledger.claim(engine, [urgent, calm], max_attempts=3)
    scored = [
        ledger.ScoredScan(urgent, (0.1, 0.1, 0.8), 2, True),
        ledger.ScoredScan(calm, (0.8, 0.1, 0.1), 0, False),
    ]
    ledger.record_results(engine, scored, "v1", "/models/v1", 0.5, {})
    card = ModelCard(version="v1", created_at="2026-12-01T00:00:00Z", urgent_threshold=0.5)
    routing = Routing(every=("dicom",), urgent_only=("key_image",))
    broker = Broker()

    def decide(scan_ids):  # noqa: ANN001, ANN202
        return studies.decide_ready(engine, scan_ids, card, card.version, routing)

    period = get_settings().reconcile_every_seconds
    report = broker.run(engine, period + 1, decide=decide)
    (study_id,) = {e.study_id for e in worklist.unescalated(engine, [urgent])}
    assert report.studies_decided == 2 and broker.renders == [study_id]
    rows = {(r["study_id"], r["channel"]): r["status"] for r in deliveries.list_deliveries(engine)}
    assert sorted(rows.values()) == ["pending", "pending", "waiting"]  # two SRs due now
    assert rows[(study_id, "key_image")] == "waiting"
    assert len(deliveries.due(engine, utcnow(), 10)) == 2  # the SRs never wait for it

    assert broker.run(engine, period + 2).key_images == 0  # just rendered: not again yet
    assert broker.run(engine, 2 * period + 2).key_images == 1  # its render was lost: again
    assert broker.run(engine, 2 * period + 3).key_images == 0  # once per period
    assert broker.renders == [study_id, study_id]

    assert studies.store_saliency(engine, study_id, urgent, bytes(4096))
    assert deliveries.key_images_due(engine, study_id) != []  # due in the same transaction
    assert broker.run(engine, 5 * period).key_images == 0 and len(broker.renders) == 2


def test_worklist_cases_never_paged_are_paged_again_until_recorded(
    engine,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.paging import page_clinicians

    paged, unpaged = add(engine, 2)
    for scan_id in (paged, unpaged):
        worklist.add_urgent_cases(
            engine,
            [Escalation(scan_id=scan_id, p2=0.9, model_version="v1", classified_at=utcnow())],
        )
    monkeypatch.setenv("TRIAGE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    # the urgent worker paged one case and died before the other's page: the log line is the
    # page (the webhook is the outbox's, whether it answers or not)
    monkeypatch.setenv("TRIAGE_NOTIFY_URL", "http://127.0.0.1:9/unreachable")
    get_settings.cache_clear()
    assert page_clinicians(get_settings(), [paged]) == [paged]

    pages: list[list[str]] = []
    broker = Broker()

    def run(now: datetime) -> int:
        return reconcile(
            engine,
            get_settings(),
            broker.publish_jobs,
            broker.publish_escalation,
            True,
            now=now,
            page=lambda ids: pages.append(list(ids)),
        ).repaged

    assert run(utcnow()) == 0, "a case escalated just now may still be being paged"
    later = utcnow() + timedelta(seconds=get_settings().reconcile_every_seconds + 1)
    assert run(later) == 1 and pages == [[unpaged]]
    worklist.mark_notified(engine, [unpaged])
    assert run(later) == 0


def test_a_slice_held_in_a_study_no_longer_receiving_is_queued_and_sent(engine) -> None:  # noqa: ANN001
    """A ledger the old race left behind: a `held` slice in a `queued` study."""
    from ledger.statements import scans as scans_table

    (scan_id,) = add(engine, 1)
    with engine.begin() as connection:
        connection.execute(
            scans_table.update().where(scans_table.c.id == scan_id).values(status="held")
        )
    broker = Broker()
    report = broker.run(engine, 1)
    assert report.held_requeued == 1 and broker.jobs["routine"] == [scan_id]
    assert reads.status_counts(engine) == {"queued": 1}
