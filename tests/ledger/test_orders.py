"""Orders in the ledger: recorded once per message, and what they do to their studies."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from imaging.identity import DicomIdentity
from ledger import deliveries, orders, reads, studies, worklist
from ledger import scans as ledger
from ledger.backlog import ledger_backlog
from ledger.deliveries import Routing
from ledger.orders import ReceivedOrder, lane_of
from ledger.statements import scans as scans_table
from ledger.studies import StudyRef
from schemas.messages import Priority
from schemas.model_card import ModelCard
from schemas.tables import utcnow

CARD = ModelCard(version="v1", created_at="2026-12-01T00:00:00Z", urgent_threshold=0.5)
ROUTING = Routing(every=("hl7",))


def order(accession: str, control: str = "NW", code: str | None = "S", number: int = 1):  # noqa: ANN201
    return ReceivedOrder(
        order_number=number,
        order_control=control,
        accession=accession,
        placer_order_number=f"PL-{accession}",
        filler_order_number=f"FI-{accession}",
        patient_id="P1",
        requested_procedure="CTCHEST^CT chest^L",
        priority_code=code,
    )


def instances(accession: str, count: int) -> list[ledger.NewScan]:
    uid = f"1.2.840.99.{uuid.uuid4().int % 10**12}"
    made = []
    for number in range(count):
        identity = DicomIdentity(
            study_uid=uid,
            series_uid=f"{uid}.1",
            sop_uid=f"{uid}.1.{number}",
            accession=accession,
            patient_id="P1",
            modality="CT",
            instance_number=number,
            slice_position=float(number),
        )
        ref = StudyRef(uid, accession, "P1")
        made.append(ledger.NewScan(str(uuid.uuid4()), bytes(4096), accession, "f", ref, identity))
    return made


def lanes_of(engine, scan_ids: list[str]) -> dict:  # noqa: ANN001
    """What intake's call does: the new scans with their accessions."""
    query = sa.select(scans_table.c.id, scans_table.c.accession).where(
        scans_table.c.id.in_(scan_ids)
    )
    with engine.begin() as connection:
        accession_of = dict(connection.execute(query).all())
    return orders.apply_to_scans(engine, accession_of)


def scan_rows(engine, ids: list[str]) -> dict[str, tuple[str, str, str | None]]:  # noqa: ANN001
    query = sa.select(
        scans_table.c.id, scans_table.c.status, scans_table.c.priority, scans_table.c.error
    ).where(scans_table.c.id.in_(ids))
    with engine.begin() as connection:
        return {row.id: (row.status, row.priority, row.error) for row in connection.execute(query)}


def finish(engine, scan_ids: list[str], p2: float, routing: Routing | None = None) -> list:  # noqa: ANN001
    ledger.claim(engine, scan_ids, max_attempts=3)
    scored = [ledger.ScoredScan(sid, (1 - p2, 0.0, p2), 2, p2 >= 0.5) for sid in scan_ids]
    ledger.record_results(engine, scored, "v1", "/m", 0.5, {})
    return studies.decide_ready(engine, scan_ids, CARD, "v1", routing)


def test_the_priority_codes_map_to_lanes() -> None:
    assert [lane_of(code) for code in ("S", "a", "R", "T", None, "")] == [
        Priority.stat, Priority.stat, Priority.routine, Priority.routine,
        Priority.routine, Priority.routine,
    ]  # fmt: skip


def test_a_message_is_recorded_once(engine) -> None:  # noqa: ANN001
    both = [order("A1"), order("A2", code="R", number=2)]
    assert orders.record_message(engine, "MSG1", "ORM^O01", both) is True
    assert orders.record_message(engine, "MSG1", "ORM^O01", [order("A3")]) is False
    rows = orders.list_orders(engine)
    assert sorted((row["accession"], row["priority"]) for row in rows) == [
        ("A1", "stat"),
        ("A2", "routine"),
    ]


def test_a_stat_order_before_its_study_puts_the_slices_on_stat(engine) -> None:  # noqa: ANN001
    orders.record_message(engine, "M1", "ORM^O01", [order("ACC1")])
    admitted = ledger.add_scans(engine, instances("ACC1", 2) + instances("OTHER", 1), "routine")
    lanes = lanes_of(engine, admitted.new)
    assert lanes == dict.fromkeys(admitted.new[:2], Priority.stat)
    rows = scan_rows(engine, admitted.new)
    assert [rows[sid][1] for sid in admitted.new] == ["stat", "stat", "routine"]
    priorities = {row["accession"]: row["priority"] for row in reads.list_studies(engine)}
    assert priorities == {"ACC1": "stat", "OTHER": "routine"}


def test_a_stat_order_after_its_study_re_publishes_what_waits(engine) -> None:  # noqa: ANN001
    admitted = ledger.add_scans(engine, instances("ACC2", 3), "routine")
    ledger.mark_published(engine, admitted.new[:2])  # the third never reached the broker
    ledger.claim(engine, admitted.new[:1], max_attempts=3)  # a worker has the first
    orders.record_message(engine, "M2", "ORM^O01", [order("ACC2")])
    applied = orders.apply_to_studies(engine, ["ACC2"])
    assert applied.to_publish[Priority.stat] == [admitted.new[1]]
    assert applied.to_publish[Priority.routine] == []
    rows = scan_rows(engine, admitted.new)
    assert [rows[sid][1] for sid in admitted.new] == ["routine", "stat", "stat"]
    assert orders.apply_to_studies(engine, ["ACC2"]).to_publish[Priority.stat] == []


def test_a_routine_order_changes_nothing_and_never_demotes(engine) -> None:  # noqa: ANN001
    orders.record_message(engine, "M3", "ORM^O01", [order("ACC3", code="R")])
    admitted = ledger.add_scans(engine, instances("ACC3", 1), "stat")
    assert lanes_of(engine, admitted.new) == {}
    assert scan_rows(engine, admitted.new)[admitted.new[0]][1] == "stat"


def test_a_cancelled_order_stops_its_waiting_study(engine) -> None:  # noqa: ANN001
    admitted = ledger.add_scans(engine, instances("ACC4", 2), "routine")
    orders.record_message(engine, "M4", "ORM^O01", [order("ACC4")])
    orders.record_message(engine, "M5", "ORM^O01", [order("ACC4", control="CA")])
    applied = orders.apply_to_studies(engine, ["ACC4"])
    assert sorted(applied.cancelled_scans) == sorted(admitted.new)
    rows = scan_rows(engine, admitted.new)
    assert {rows[sid][0] for sid in admitted.new} == {"failed"}
    assert {rows[sid][2] for sid in admitted.new} == {"order cancelled"}
    (study,) = reads.list_studies(engine)
    assert (study["status"], study["order_control"], study["order_note"]) == (
        "failed",
        "CA",
        "order cancelled",
    )
    # a slice that arrives after the cancel is stopped at intake
    late = ledger.add_scans(engine, instances("ACC4", 1), "routine")
    assert lanes_of(engine, late.new) == {late.new[0]: None}
    assert scan_rows(engine, late.new)[late.new[0]][0] == "failed"


def test_a_cancelled_decided_study_sends_nothing_and_leaves_the_worklist(engine) -> None:  # noqa: ANN001
    kept = ledger.add_scans(engine, instances("KEEP", 1), "routine").new
    gone = ledger.add_scans(engine, instances("GONE", 1), "routine").new
    escalations = finish(engine, kept + gone, 0.9, ROUTING)
    worklist.add_urgent_cases(engine, escalations)
    assert len(reads.worklist(engine)) == 2
    assert ledger_backlog(engine, utcnow()).open_urgent_cases == 2
    listed = reads.worklist_version(engine)
    orders.record_message(engine, "M6", "OMI^O23", [order("GONE", control="OC")])
    applied = orders.apply_to_studies(engine, ["GONE"])
    assert applied.cancelled_deliveries == 1 and applied.cancelled_scans == []
    assert [case["accession"] for case in reads.worklist(engine)] == ["KEEP"]
    assert ledger_backlog(engine, utcnow()).open_urgent_cases == 1  # `triage stats`, metrics
    assert reads.worklist_version(engine) != listed  # the live page re-reads its list
    by_study = {row["study_uid"]: row for row in deliveries.list_deliveries(engine)}
    states = sorted((row["status"], row["last_error"]) for row in by_study.values())
    assert states == [("failed", "order cancelled"), ("pending", None)]


def test_a_decision_after_the_cancel_writes_no_deliveries(engine) -> None:  # noqa: ANN001
    admitted = ledger.add_scans(engine, instances("LATE", 1), "routine").new
    ledger.claim(engine, admitted, max_attempts=3)  # a worker holds it when the cancel comes
    orders.record_message(engine, "M7", "ORM^O01", [order("LATE", control="CA")])
    assert orders.apply_to_studies(engine, ["LATE"]).cancelled_scans == []
    scored = [ledger.ScoredScan(admitted[0], (0.1, 0.0, 0.9), 2, True)]
    ledger.record_results(engine, scored, "v1", "/m", 0.5, {})
    studies.decide_ready(engine, admitted, CARD, "v1", ROUTING)
    assert deliveries.list_deliveries(engine) == []


def test_a_delivery_written_as_its_cancel_was_applied_is_never_sent(engine) -> None:  # noqa: ANN001
    """PostgreSQL, read committed: the decision checked for a cancel before the CA was
    committed, the cancel's update did not see the decision's uncommitted rows. The end state
    of that race, made in order here: the sender's claim must stop the row."""
    decided = ledger.add_scans(engine, instances("RACE", 1), "routine").new
    finish(engine, decided, 0.9, ROUTING)  # a pending HL7 delivery
    orders.record_message(engine, "M10", "ORM^O01", [order("RACE", control="CA")])
    (row,) = deliveries.list_deliveries(engine)
    assert deliveries.claim(engine, row["id"]) is None
    (row,) = deliveries.list_deliveries(engine)
    assert (row["status"], row["last_error"]) == ("failed", "order cancelled")


def test_the_worklist_puts_stat_studies_ahead_of_routine_urgent_ones(engine) -> None:  # noqa: ANN001
    routine = ledger.add_scans(engine, instances("R1", 1), "routine").new
    orders.record_message(engine, "M8", "ORM^O01", [order("S1")])
    stat = ledger.add_scans(engine, instances("S1", 1), "routine").new
    lanes_of(engine, stat)
    worklist.add_urgent_cases(engine, finish(engine, routine, 0.99))
    worklist.add_urgent_cases(engine, finish(engine, stat, 0.6))
    assert [case["accession"] for case in reads.worklist(engine)] == ["S1", "R1"]


def test_the_report_facts_name_the_order(engine) -> None:  # noqa: ANN001
    orders.record_message(engine, "M9", "ORM^O01", [order("F1")])
    ids = ledger.add_scans(engine, instances("F1", 1) + instances("F2", 1), "routine").new
    finish(engine, ids, 0.2)
    of_scan = {row["top_scan_id"]: row["study_id"] for row in reads.list_studies(engine)}
    named = deliveries.report_facts(engine, of_scan[ids[0]])
    assert (named["placer_order_number"], named["filler_order_number"]) == ("PL-F1", "FI-F1")
    unnamed = deliveries.report_facts(engine, of_scan[ids[1]])
    assert unnamed["placer_order_number"] is None and unnamed["filler_order_number"] is None


def test_a_stat_order_while_its_study_is_receiving_closes_it_on_stat(engine) -> None:  # noqa: ANN001
    admitted = ledger.add_scans(engine, instances("HELD", 2), "routine", hold=True)
    assert len(admitted.held) == 2
    orders.record_message(engine, "M10", "ORM^O01", [order("HELD")])
    assert orders.apply_to_studies(engine, ["HELD"]).to_publish[Priority.stat] == []  # held
    closed = studies.close_idle(engine, utcnow() + timedelta(seconds=1))
    assert sorted(closed.to_publish[Priority.stat]) == sorted(admitted.held)
    assert closed.to_publish[Priority.routine] == []
