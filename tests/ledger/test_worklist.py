"""The urgent worklist in the ledger: most urgent first, acknowledged once, by study UID,
accession or any slice of the study (real SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

from ledger import reads, worklist
from ledger import scans as ledger
from schemas.messages import Escalation
from tests.ledger.test_studies import finish, instance


def add(engine, count: int) -> list[str]:  # noqa: ANN001
    """`count` scans, each a study of its own."""
    new = [ledger.NewScan(str(uuid.uuid4()), bytes(4096), f"ACC{i}", "f.png") for i in range(count)]
    ledger.add_scans(engine, new, "routine")
    return [scan.scan_id for scan in new]


def test_the_worklist_is_most_urgent_first_and_ack_closes_a_case(engine) -> None:
    ids = add(engine, 3)
    when = ledger.utcnow()
    for scan_id, p2 in zip(ids, [0.7, 0.95, 0.8], strict=True):
        study_id = reads.history(engine, scan_id)["study_id"]  # each scan: a study of its own
        escalation = Escalation(
            scan_id=scan_id, study_id=study_id, p2=p2, model_version="m", classified_at=when
        )
        worklist.add_urgent_cases(engine, [escalation])

    assert [case["scan_id"] for case in reads.worklist(engine)] == [ids[1], ids[2], ids[0]]
    acknowledged = worklist.acknowledge(engine, ids[1], "tester")
    assert acknowledged is not None
    assert worklist.acknowledge(engine, ids[1], "tester") == acknowledged  # idempotent
    assert worklist.acknowledge(engine, "no-such-scan", "tester") is None
    assert [case["scan_id"] for case in reads.worklist(engine)] == [ids[2], ids[0]]
    everything = reads.worklist(engine, include_acknowledged=True)
    assert [case["acknowledged"] for case in everything] == [True, False, False]
    assert all(case["waited_s"] >= 0 for case in everything)
    assert reads.history(engine, ids[1])["acknowledged_at"] == acknowledged


def test_the_worklist_pages_reach_every_case_in_order_with_the_count_of_all(engine) -> None:  # noqa: ANN001
    ids = add(engine, 5)
    when = ledger.utcnow()
    for scan_id, p2 in zip(ids, [0.6, 0.9, 0.7, 0.95, 0.8], strict=True):
        study_id = reads.history(engine, scan_id)["study_id"]
        escalation = Escalation(
            scan_id=scan_id, study_id=study_id, p2=p2, model_version="m", classified_at=when
        )
        worklist.add_urgent_cases(engine, [escalation])
    pages = [reads.worklist_page(engine, page=page, per_page=2) for page in (1, 2, 3, 4)]
    assert [[case["scan_id"] for case in cases] for cases, _ in pages] == [
        [ids[3], ids[1]], [ids[4], ids[2]], [ids[0]], []
    ]  # fmt: skip
    assert [total for _, total in pages] == [5, 5, 5, 5]
    assert [case["scan_id"] for case in reads.worklist(engine, limit=2)] == [ids[3], ids[1]]
    assert [case["scan_id"] for case in reads.worklist(engine, limit=2, offset=3)] == [
        ids[2],
        ids[0],
    ]
    worklist.acknowledge(engine, ids[3], "tester")
    assert reads.worklist_page(engine, acknowledged_only=True, per_page=2)[1] == 1
    assert reads.worklist_page(engine, per_page=10)[1] == 4 == reads.worklist_size(engine)


def test_ack_by_study_uid_accession_or_scan_id(engine) -> None:  # noqa: ANN001
    ids = ledger.add_scans(engine, [instance("1.2.3.1234", n) for n in range(2)], "routine").new
    (escalation,) = finish(engine, ids, [0.9, 0.8])
    worklist.add_urgent_cases(engine, [escalation])
    assert worklist.acknowledge(engine, "no-such-study", "tester") is None
    moment = worklist.acknowledge(engine, "ACC-1234", "tester")
    assert moment is not None
    assert worklist.acknowledge(engine, "1.2.3.1234", "tester") == moment
    assert (
        worklist.acknowledge(engine, ids[1], "tester") == moment
    )  # a slice that is not the top one
    assert reads.worklist(engine) == []
