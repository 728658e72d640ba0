"""The outbox in the ledger: rows written with the decision, claimed once, backed off, kept."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from ledger import deliveries, studies
from ledger import scans as ledger
from ledger.deliveries import Routing
from ledger.statements import deliveries as table
from schemas.model_card import ModelCard
from schemas.tables import utcnow

CARD = ModelCard(version="v1", created_at="2026-12-01T00:00:00Z", urgent_threshold=0.5)
ROUTING = Routing(every=("dicom", "fhir"), urgent_only=("hl7",))


def decided(engine, p2s: list[float], routing: Routing = ROUTING) -> list[str]:  # noqa: ANN001
    """Studies of one scan each, classified with these P(2) and decided with the outbox."""
    new = [ledger.NewScan(str(uuid.uuid4()), bytes(4096), None, "x") for _ in p2s]
    ids = ledger.add_scans(engine, new, "routine").new
    ledger.claim(engine, ids, max_attempts=3)
    scored = [
        ledger.ScoredScan(sid, (1 - p2, 0.0, p2), 2 if p2 >= 0.5 else 0, p2 >= 0.5)
        for sid, p2 in zip(ids, p2s, strict=True)
    ]
    ledger.record_results(engine, scored, "v1", "/m", 0.5, {})
    studies.decide_ready(engine, ids, CARD, "v1", routing)
    return ids


def test_each_decision_writes_its_rows_in_the_same_transaction(engine) -> None:  # noqa: ANN001
    ids = decided(engine, [0.9, 0.1])
    rows = deliveries.list_deliveries(engine)
    assert sorted(row["channel"] for row in rows) == ["dicom", "dicom", "fhir", "fhir", "hl7"]
    assert {row["status"] for row in rows} == {"pending"}
    assert len(deliveries.pending_for_scans(engine, ids)) == 5
    assert deliveries.waiting_by_channel(engine) == {"dicom": 2, "fhir": 2, "hl7": 1}
    # decided once: deciding again writes nothing
    studies.decide_ready(engine, ids, CARD, "v1", ROUTING)
    assert len(deliveries.list_deliveries(engine)) == 5


def test_no_channel_configured_writes_no_rows(engine) -> None:  # noqa: ANN001
    decided(engine, [0.9], Routing())
    assert deliveries.list_deliveries(engine) == []


def test_a_row_is_claimed_once_backed_off_and_finally_delivered(engine) -> None:  # noqa: ANN001
    decided(engine, [0.9], Routing(every=("dicom",)))
    (row,) = deliveries.list_deliveries(engine)
    first = deliveries.claim(engine, row["id"])
    assert first is not None and first["attempts"] == 1
    assert deliveries.claim(engine, row["id"]) is None  # leased: a duplicate job does nothing
    when = deliveries.mark_retry(engine, row["id"], first["attempts"], "association refused")
    assert timedelta(0) < when - utcnow() <= timedelta(seconds=1.5)
    assert deliveries.due(engine, utcnow(), 10) == []
    assert deliveries.due(engine, utcnow() + timedelta(seconds=2), 10) == [row["id"]]
    assert [deliveries.backoff_s(n) for n in (1, 2, 3, 7, 8, 20)] == [1, 2, 4, 60, 60, 60]
    with engine.begin() as connection:  # the backoff ran out
        connection.execute(table.update().values(next_attempt_at=utcnow()))
    second = deliveries.claim(engine, row["id"])
    assert second is not None and second["attempts"] == 2
    deliveries.mark_delivered(engine, row["id"])
    deliveries.mark_retry(engine, row["id"], 2, "late duplicate")  # changes nothing now
    (done,) = deliveries.list_deliveries(engine)
    assert done["status"] == "delivered" and done["last_error"] is None
    assert deliveries.claim(engine, row["id"]) is None


def test_a_refused_message_fails_with_its_reason_and_is_not_due_again(engine) -> None:  # noqa: ANN001
    decided(engine, [0.1], Routing(every=("fhir",)))
    (row,) = deliveries.list_deliveries(engine)
    deliveries.claim(engine, row["id"])
    deliveries.mark_failed(engine, row["id"], "HTTP 422 from the FHIR server")
    (failed,) = deliveries.list_deliveries(engine)
    assert failed["status"] == "failed" and "422" in failed["last_error"]
    assert deliveries.due(engine, utcnow() + timedelta(hours=1), 10) == []
    with engine.connect() as connection:
        keys = connection.execute(sa.select(table.c.idempotency_key)).scalars().all()
    assert keys == [f"{row['study_id']}.1.fhir"]


def test_a_study_decided_again_gets_new_rows_for_its_new_decision(engine) -> None:  # noqa: ANN001
    (first,) = decided(engine, [0.9], Routing(every=("dicom",)))
    uid = studies.study_row(engine, reads_study(engine, first))["study_uid"]
    # a late slice of the same study re-opens it
    late = ledger.NewScan(str(uuid.uuid4()), bytes(4096), None, "late", studies.StudyRef(uid))
    more = ledger.add_scans(engine, [late], "routine").new
    ledger.claim(engine, more, max_attempts=3)
    ledger.record_results(
        engine, [ledger.ScoredScan(more[0], (0.9, 0.0, 0.1), 0, False)], "v1", "/m", 0.5, {}
    )
    studies.decide_ready(engine, more, CARD, "v1", Routing(every=("dicom",)))
    rows = deliveries.list_deliveries(engine)
    assert sorted(row["decision"] for row in rows) == [1, 2]


def reads_study(engine, scan_id: str) -> str:  # noqa: ANN001
    from ledger.reads import history

    return history(engine, scan_id)["study_id"]


KEY_IMAGE_ROUTING = Routing(every=("dicom",), urgent_only=("key_image",))


def test_a_key_image_waits_for_its_saliency_map_and_is_due_once_it_is_stored(engine) -> None:  # noqa: ANN001
    (scan_id,) = decided(engine, [0.9], KEY_IMAGE_ROUTING)
    study_id = reads_study(engine, scan_id)
    rows = {row["channel"]: row for row in deliveries.list_deliveries(engine)}
    assert (rows["dicom"]["status"], rows["key_image"]["status"]) == ("pending", "waiting")
    later = utcnow() + timedelta(hours=1)
    assert deliveries.due(engine, later, 10) == [rows["dicom"]["id"]]  # never retried
    assert deliveries.claim(engine, rows["key_image"]["id"]) is None
    assert deliveries.waiting_by_channel(engine) == {"dicom": 1, "key_image": 1}
    assert not studies.store_saliency(engine, study_id, "not-its-top-slice", bytes(4096))
    assert deliveries.key_images_due(engine, study_id) == []
    assert studies.store_saliency(engine, study_id, scan_id, bytes(4096))
    assert deliveries.key_images_due(engine, study_id) == [rows["key_image"]["id"]]
    assert rows["key_image"]["id"] in deliveries.due(engine, utcnow(), 10)


def test_the_stow_rs_key_image_waits_for_the_saliency_map_too(engine) -> None:  # noqa: ANN001
    routing = Routing(every=("dicom", "dicomweb"), urgent_only=("key_image", "dicomweb_key"))
    (scan_id,) = decided(engine, [0.9], routing)
    study_id = reads_study(engine, scan_id)
    rows = {row["channel"]: row for row in deliveries.list_deliveries(engine)}
    assert rows["dicomweb"]["status"] == "pending"
    assert rows["dicomweb_key"]["status"] == "waiting"
    assert studies.store_saliency(engine, study_id, scan_id, bytes(4096))
    assert deliveries.key_images_due(engine, study_id) == sorted(
        [rows["key_image"]["id"], rows["dicomweb_key"]["id"]]
    )


def test_a_key_image_still_waiting_when_its_study_is_decided_again_is_superseded(engine) -> None:  # noqa: ANN001
    (first,) = decided(engine, [0.9], KEY_IMAGE_ROUTING)
    uid = studies.study_row(engine, reads_study(engine, first))["study_uid"]
    late = ledger.NewScan(str(uuid.uuid4()), bytes(4096), None, "late", studies.StudyRef(uid))
    more = ledger.add_scans(engine, [late], "routine").new
    ledger.claim(engine, more, max_attempts=3)
    ledger.record_results(
        engine, [ledger.ScoredScan(more[0], (0.05, 0.0, 0.95), 2, True)], "v1", "/m", 0.5, {}
    )
    studies.decide_ready(engine, more, CARD, "v1", KEY_IMAGE_ROUTING)
    key_images = {
        row["decision"]: row
        for row in deliveries.list_deliveries(engine)
        if row["channel"] == "key_image"
    }
    assert key_images[1]["status"] == "failed" and "superseded" in key_images[1]["last_error"]
    assert key_images[2]["status"] == "waiting"  # the new decision renders its own
