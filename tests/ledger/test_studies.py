"""Studies in the ledger: grouping, repeats, closing, one decision, re-opening, a re-decided\nstudy's worklist row."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from imaging.identity import DicomIdentity
from ledger import reads, studies, worklist
from ledger import scans as ledger
from ledger.statements import scans as scans_table
from ledger.statements import studies as studies_table
from ledger.studies import StudyRef
from schemas.messages import Priority
from schemas.model_card import ModelCard, StudyRule
from schemas.tables import utcnow

CARD = ModelCard(version="v1", created_at="2026-12-01T00:00:00Z", urgent_threshold=0.5)


def instance(study_uid: str, number: int, sop: str | None = None) -> ledger.NewScan:
    identity = DicomIdentity(
        study_uid=study_uid,
        series_uid=f"{study_uid}.1",
        sop_uid=sop or f"{study_uid}.1.{number}",
        accession=f"ACC-{study_uid[-4:]}",
        patient_id="P1",
        modality="CT",
        instance_number=number,
        slice_position=float(number),
    )
    ref = StudyRef(study_uid, identity.accession, identity.patient_id)
    return ledger.NewScan(str(uuid.uuid4()), bytes(4096), identity.accession, "f", ref, identity)


def finish(engine, scan_ids: list[str], p2s: list[float]) -> list:  # noqa: ANN001
    """Claim and record results as a worker would; then decide, as the worker does."""
    ledger.claim(engine, scan_ids, max_attempts=3)
    scored = [
        ledger.ScoredScan(sid, (1 - p2, 0.0, p2), 2 if p2 >= 0.5 else 0, p2 >= 0.5)
        for sid, p2 in zip(scan_ids, p2s, strict=True)
    ]
    ledger.record_results(engine, scored, "v1", "/m", 0.5, {})
    return studies.decide_ready(engine, scan_ids, CARD, "v1")


def test_instances_of_one_study_share_one_row_and_a_repeat_is_no_new_scan(engine) -> None:  # noqa: ANN001
    first = ledger.add_scans(engine, [instance("1.2.3.4001", n) for n in range(3)], "routine")
    assert len(first.new) == 3 and first.held == [] and first.repeated == {}
    again = ledger.add_scans(
        engine, [instance("1.2.3.4001", 1), instance("1.2.3.4001", 9)], "routine"
    )
    assert again.repeated == {0: first.new[1]} and len(again.new) == 1
    rows = reads.list_studies(engine)
    assert [(row["study_uid"], row["slices"], row["status"]) for row in rows] == [
        ("1.2.3.4001", 4, "queued")
    ]
    assert rows[0]["accession"] == "ACC-4001"
    # a repeat inside one call counts as received once too
    twice = ledger.add_scans(engine, [instance("1.2.3.4002", 1)] * 2, "routine")
    assert len(twice.new) == 1 and twice.repeated == {1: twice.new[0]}


def test_a_study_is_decided_once_when_its_last_slice_is_finished(engine) -> None:  # noqa: ANN001
    ids = ledger.add_scans(engine, [instance("1.2.3.5001", n) for n in range(3)], "routine").new
    assert finish(engine, ids[:2], [0.1, 0.9]) == []  # one slice still queued: not yet
    assert reads.list_studies(engine)[0]["p2"] is None
    (escalation,) = finish(engine, ids[2:], [0.2])
    assert escalation.scan_id == ids[1] and escalation.p2 == pytest.approx(0.9)
    row = reads.list_studies(engine)[0]
    assert (row["status"], row["urgent"], row["predicted"], row["top_scan_id"]) == (
        "classified",
        True,
        2,
        ids[1],
    )
    assert studies.decide_ready(engine, ids, CARD, "v1") == []  # decided once
    assert worklist.unescalated(engine, ids) == [escalation]  # not on the worklist yet
    assert worklist.add_urgent_cases(engine, [escalation]) == [ids[1]]
    assert worklist.unescalated(engine, ids) == []
    (case,) = reads.worklist(engine)
    assert (case["study_uid"], case["slices"], case["scan_id"]) == ("1.2.3.5001", 3, ids[1])


def test_a_study_rule_on_the_card_decides_by_the_top_slices(engine) -> None:  # noqa: ANN001
    card = CARD.model_copy(update={"study_rule": StudyRule(top_k=2, threshold=0.6)})
    ids = ledger.add_scans(engine, [instance("1.2.3.6001", n) for n in range(3)], "routine").new
    ledger.claim(engine, ids, max_attempts=3)
    scored = [
        ledger.ScoredScan(sid, (1 - p2, 0.0, p2), 0, False)
        for sid, p2 in zip(ids, [0.9, 0.1, 0.2], strict=True)
    ]
    ledger.record_results(engine, scored, "v1", "/m", 0.5, {})
    assert studies.decide_ready(engine, ids, card, "v1") == []  # (0.9 + 0.2) / 2 < 0.6
    assert reads.list_studies(engine)[0]["p2"] == pytest.approx(0.55)


def test_held_slices_wait_until_the_study_is_idle_and_a_late_instance_reopens_it(engine) -> None:  # noqa: ANN001
    held = ledger.add_scans(
        engine, [instance("1.2.3.7001", n) for n in range(2)], "stat", hold=True
    )
    assert held.held == held.new
    assert reads.list_studies(engine)[0]["status"] == "receiving"
    assert studies.close_idle(engine, utcnow() - timedelta(seconds=60)).studies == 0  # too new
    closed = studies.close_idle(engine, utcnow() + timedelta(seconds=1))
    assert closed.studies == 1 and sorted(closed.to_publish[Priority.stat]) == sorted(held.new)
    assert finish(engine, held.new, [0.1, 0.2]) == []
    (row,) = reads.list_studies(engine)
    assert row["status"] == "classified" and row["urgent"] is False
    late = ledger.add_scans(engine, [instance("1.2.3.7001", 5)], "routine", hold=True)
    (row,) = reads.list_studies(engine)
    assert row["status"] == "receiving" and row["slices"] == 3
    closed = studies.close_idle(engine, utcnow() + timedelta(seconds=1))
    assert closed.to_publish[Priority.stat] == late.new  # the study keeps `stat`
    (escalation,) = finish(engine, late.new, [0.95])
    (row,) = reads.list_studies(engine)
    assert row["status"] == "classified" and row["urgent"] and row["top_scan_id"] == late.new[0]


def test_a_study_decided_again_updates_its_worklist_row_without_a_new_page(engine) -> None:  # noqa: ANN001
    ids = ledger.add_scans(engine, [instance("1.2.3.8001", 0)], "routine").new
    (first,) = finish(engine, ids, [0.7])
    assert worklist.add_urgent_cases(engine, [first]) == ids
    more = ledger.add_scans(engine, [instance("1.2.3.8001", 1)], "routine").new  # re-opened
    (second,) = finish(engine, more, [0.99])
    assert second.study_id == first.study_id and second.scan_id == more[0]
    assert worklist.add_urgent_cases(engine, [second]) == []  # no second page
    (case,) = reads.worklist(engine)
    assert case["scan_id"] == more[0] and case["p2"] == pytest.approx(0.99)  # max slice rule


def test_a_study_whose_slices_all_failed_ends_failed(engine) -> None:  # noqa: ANN001
    ids = ledger.add_scans(engine, [instance("1.2.3.9001", n) for n in range(2)], "routine").new
    ledger.mark_failed(engine, ids, "stored pixels are not 4096 bytes")
    assert studies.decide_ready(engine, ids, CARD, "v1") == []
    assert reads.list_studies(engine)[0]["status"] == "failed"


def test_a_scan_without_a_study_is_a_study_of_its_own(engine) -> None:  # noqa: ANN001
    new = [ledger.NewScan(str(uuid.uuid4()), bytes(4096), f"A{i}", "x.png") for i in range(2)]
    ids = ledger.add_scans(engine, new, "routine").new
    rows = reads.list_studies(engine)
    assert sorted(row["accession"] for row in rows) == ["A0", "A1"]
    assert all(row["study_uid"].startswith("triage:") and row["slices"] == 1 for row in rows)
    with engine.connect() as connection:
        owners = connection.execute(
            sa.select(scans_table.c.study_id).where(scans_table.c.id.in_(ids))
        ).scalars()
        assert len(set(owners)) == 2


def patient_instance(
    study_uid: str, number: int, patient: str | None, issuer: str | None = None, **changes: str
) -> ledger.NewScan:
    """An instance of `study_uid` that came with this patient (and issuer, accession)."""
    base = instance(study_uid, number)
    identity = dataclasses.replace(
        base.identity, patient_id=patient, patient_issuer=issuer, **changes
    )
    ref = StudyRef(study_uid, identity.accession, patient, issuer)
    return dataclasses.replace(base, study=ref, identity=identity, accession=identity.accession)


def test_an_instance_of_another_patient_is_refused_never_merged(engine) -> None:  # noqa: ANN001
    uid = "1.2.3.9001"
    first = ledger.add_scans(engine, [patient_instance(uid, 1, "PAT-A", "HOSP-1")], "routine")
    (ids,) = [first.new]
    assert first.contradicting == {}
    finish(engine, ids, [0.9])  # decided: a contradicting instance must not re-open it
    later = ledger.add_scans(
        engine,
        [
            patient_instance(uid, 2, "PAT-B", "HOSP-1"),  # another patient
            patient_instance(uid, 3, "PAT-A", "HOSP-2"),  # same id from another issuer
            patient_instance(uid, 4, "PAT-A", "HOSP-1", accession="ACC-OTHER"),
            patient_instance("1.2.3.9002", 1, "PAT-C"),  # another study: not concerned
            patient_instance("1.2.3.9002", 2, "PAT-D"),  # contradicts the one just before
        ],
        "routine",
    )
    assert sorted(later.contradicting) == [0, 1, 2, 4]
    assert "PatientID" in later.contradicting[0] and "PAT-B" not in later.contradicting[0]
    assert "IssuerOfPatientID" in later.contradicting[1]
    assert "AccessionNumber" in later.contradicting[2]
    assert len(later.new) == 1
    rows = {row["study_uid"]: row for row in reads.list_studies(engine)}
    assert rows[uid]["slices"] == 1 and rows[uid]["status"] == "classified"
    with engine.begin() as connection:
        counts = dict(
            connection.execute(
                sa.select(studies_table.c.study_uid, studies_table.c.contradicting)
            ).all()
        )
        patients = dict(
            connection.execute(sa.select(scans_table.c.id, scans_table.c.patient_id)).all()
        )
    assert counts == {uid: 3, "1.2.3.9002": 1}
    assert patients == {ids[0]: "PAT-A", later.new[0]: "PAT-C"}
    # absent values are not compared: an instance without PatientID or issuer may join
    quiet = ledger.add_scans(engine, [patient_instance(uid, 5, None)], "routine")
    assert quiet.contradicting == {} and len(quiet.new) == 1


def held_in_closed_studies(engine) -> int:  # noqa: ANN001
    """Slices `held` in a study that is no longer receiving: nothing would ever queue them."""
    with engine.begin() as connection:
        query = (
            sa.select(sa.func.count())
            .select_from(scans_table.join(studies_table))
            .where(scans_table.c.status == "held", studies_table.c.status != "receiving")
        )
        return int(connection.execute(query).scalar_one())


def test_a_study_cannot_close_between_reading_it_and_holding_its_slice(engine) -> None:  # noqa: ANN001
    """The interleaving that stranded a slice on PostgreSQL: an intake reads the study as
    `receiving`, the idle closer commits, then the intake writes its slice `held`."""
    import threading

    uid = "1.2.3.9101"
    ledger.add_scans(engine, [instance(uid, 1)], "routine", hold=True)
    intake_read, closer_done = threading.Event(), threading.Event()
    intake = threading.get_ident()

    def pause_after_the_read(connection, _cursor, statement: str, *_args) -> None:  # noqa: ANN001
        if threading.get_ident() == intake and statement.startswith("UPDATE studies SET last"):
            intake_read.set()
            closer_done.wait(timeout=3)  # SQLite: the closer waits for this transaction

    def close_when_read() -> None:
        intake_read.wait(timeout=30)
        studies.close_idle(engine, utcnow() + timedelta(seconds=60))
        closer_done.set()

    closer = threading.Thread(target=close_when_read)
    closer.start()
    sa.event.listen(engine, "before_cursor_execute", pause_after_the_read)
    try:
        late = ledger.add_scans(engine, [instance(uid, 2)], "routine")  # `triage enqueue`
    finally:
        sa.event.remove(engine, "before_cursor_execute", pause_after_the_read)
        closer.join(timeout=60)
    assert intake_read.is_set() and late.new
    assert held_in_closed_studies(engine) == 0
    studies.close_idle(engine, utcnow() + timedelta(seconds=60))
    assert reads.status_counts(engine) == {"queued": 2}


def test_enqueue_receive_close_and_decide_interleaved_leave_no_slice_waiting(engine) -> None:  # noqa: ANN001
    """Threads receiving, enqueueing, closing and deciding over the same studies: afterwards
    no slice is held in a closed study, and closing and finishing once more decides all."""
    import threading

    uids = [f"1.2.3.92{n:02d}" for n in range(3)]
    errors: list[BaseException] = []
    numbers = iter(range(1, 1_000_000))
    lock = threading.Lock()

    def next_instance(round_: int) -> ledger.NewScan:
        with lock:
            number = next(numbers)
        return instance(uids[(round_ + number) % len(uids)], number)

    def receive(round_: int) -> None:
        ledger.add_scans(engine, [next_instance(round_)], "routine", hold=True)

    def enqueue(round_: int) -> None:
        ledger.add_scans(engine, [next_instance(round_) for _ in range(2)], "routine")

    def close(_round: int) -> None:
        studies.close_idle(engine, utcnow() + timedelta(seconds=60))

    def decide(_round: int) -> None:
        with engine.begin() as connection:
            query = sa.select(scans_table.c.id).where(scans_table.c.status == "queued")
            waiting = list(connection.execute(query).scalars())
        if waiting:
            finish(engine, waiting, [0.2] * len(waiting))

    def repeat(step) -> None:  # noqa: ANN001
        try:
            for round_ in range(25):
                step(round_)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [
        threading.Thread(target=repeat, args=(s,)) for s in (receive, enqueue, close, decide)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    assert held_in_closed_studies(engine) == 0
    close(0)
    decide(0)
    assert reads.status_counts(engine) == {"done": 25 + 50}
    assert {row["status"] for row in reads.list_studies(engine)} == {"classified"}
