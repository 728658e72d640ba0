"""A scan's life in the ledger: an unknown priority is refused, results are written once per
model decision, and outages leave scans waiting, not failed.

Against a real ledger (SQLite and PostgreSQL); no model and no Celery needed.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from ledger import reads
from ledger import scans as ledger
from tests.fixtures_model import brightness_scans


def add(engine, count: int) -> list[str]:  # noqa: ANN001
    new = [
        ledger.NewScan(str(uuid.uuid4()), scan.tobytes(), None, f"file{i}.png")
        for i, scan in enumerate(brightness_scans([60] * count, seed=count))
    ]
    ledger.add_scans(engine, new, "routine")
    return [scan.scan_id for scan in new]


def record(engine, scan_ids: list[str], p2: float, version: str) -> ledger.Recorded:  # noqa: ANN001
    scored = [
        ledger.ScoredScan(sid, (1 - p2, 0.0, p2), 2 if p2 >= 0.5 else 0, p2 >= 0.5)
        for sid in scan_ids
    ]
    return ledger.record_results(engine, scored, version, f"/models/{version}", 0.5, {})


def result(engine, scan_id: str) -> dict | None:  # noqa: ANN001
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(ledger.results).where(ledger.results.c.scan_id == scan_id)
        ).first()
    return None if row is None else dict(row._mapping)


def test_a_done_scan_keeps_its_first_result_under_a_newer_model(engine) -> None:  # noqa: ANN001
    (scan_id,) = add(engine, 1)
    ledger.claim(engine, [scan_id], max_attempts=3)
    assert record(engine, [scan_id], 0.9, "v1").scan_ids == [scan_id]
    ledger.claim(engine, [scan_id], max_attempts=3)  # a redelivery: done scans are not claimed
    assert record(engine, [scan_id], 0.1, "v2").scan_ids == []
    kept = result(engine, scan_id)
    assert kept["model_version"] == "v1" and kept["p2"] == pytest.approx(0.9) and kept["urgent"]
    assert reads.history(engine, scan_id)["status"] == "done"


def test_a_late_duplicate_leaves_a_failed_scan_failed_with_its_error(engine) -> None:  # noqa: ANN001
    (scan_id,) = add(engine, 1)
    ledger.claim(engine, [scan_id], max_attempts=3)
    ledger.mark_failed(engine, [scan_id], "stored pixels are not 4096 bytes")
    assert record(engine, [scan_id], 0.9, "v1").scan_ids == []
    found = reads.history(engine, scan_id)
    assert found["status"] == "failed" and found["error"] == "stored pixels are not 4096 bytes"
    assert result(engine, scan_id) is None


def test_only_claimed_scans_get_a_result_and_two_claims_record_once(engine) -> None:  # noqa: ANN001
    unclaimed, twice = add(engine, 2)
    assert record(engine, [unclaimed], 0.9, "v1").scan_ids == []
    assert reads.history(engine, unclaimed)["status"] == "queued"
    for _ in range(2):  # two deliveries of one job, both running
        ledger.claim(engine, [twice], max_attempts=3)
    assert record(engine, [twice], 0.2, "v1").scan_ids == [twice]
    assert record(engine, [twice], 0.8, "v2").scan_ids == []
    assert result(engine, twice)["model_version"] == "v1"
    assert reads.status_counts(engine) == {"queued": 1, "done": 1}


def test_release_puts_claimed_scans_back_in_queued_uncounted(engine) -> None:  # noqa: ANN001
    claimed, waiting, done, failed = add(engine, 4)
    ledger.claim(engine, [claimed, done, failed], max_attempts=3)
    record(engine, [done], 0.1, "v1")
    ledger.mark_failed(engine, [failed], "classification failed: ValueError")
    reason = "waiting after 5 retries: OperationalError: server closed the connection"

    released = ledger.release(engine, [claimed, waiting, done, failed], reason)

    assert released == [claimed]
    states = {sid: reads.history(engine, sid) for sid in (claimed, waiting, done, failed)}
    assert [states[sid]["status"] for sid in (claimed, waiting, done, failed)] == [
        "queued",
        "queued",
        "done",
        "failed",
    ]
    assert states[claimed]["attempts"] == 0 and states[claimed]["error"] == reason
    assert states[waiting]["attempts"] == 0 and states[waiting]["error"] == reason
    assert states[failed]["error"] == "classification failed: ValueError"
    # outages never use up a scan's attempts: claimed and released again and again
    for _ in range(5):
        assert ledger.claim(engine, [claimed], max_attempts=3).exhausted == []
        ledger.release(engine, [claimed], reason)
    assert reads.history(engine, claimed)["attempts"] == 0
    assert record(engine, [claimed], 0.1, "v1").scan_ids == []  # released: not this job's now


def test_unknown_priority_is_refused(engine) -> None:  # noqa: ANN001
    scan = ledger.NewScan("x", bytes(4096), None, None)
    with pytest.raises(ValueError, match="unknown priority 'asap'"):
        ledger.add_scans(engine, [scan], "asap")
