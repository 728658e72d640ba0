"""Classification against a real database (SQLite and PostgreSQL).

The task body runs in-process here; tests/integration runs it in real worker processes.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
import sqlalchemy.exc

from ledger import reads, worklist
from ledger import scans as ledger
from schemas.messages import Escalation
from schemas.settings import get_settings
from tests.fixtures_model import BRIGHTNESS_MODEL_VERSION, brightness_scans
from worker.model import current_model
from worker.tasks import classify, classify_scans


def add(engine, means: list[int], priority: str = "routine") -> list[str]:  # noqa: ANN001
    scans = brightness_scans(means, seed=len(means))
    new = [
        ledger.NewScan(str(uuid.uuid4()), scan.tobytes(), f"ACC{i}", f"file{i}.png")
        for i, scan in enumerate(scans)
    ]
    ledger.add_scans(engine, new, priority)
    return [scan.scan_id for scan in new]


def test_a_batch_gets_one_result_each_and_urgent_ones_are_escalated(
    engine, model_root: Path
) -> None:
    ids = add(engine, [30, 220, 60, 240])
    sent: list[Escalation] = []
    model = current_model(get_settings())

    outcome = classify_scans(engine, ids, model, max_attempts=3, publish=sent.append)

    assert outcome == {"classified": 4, "urgent": 2, "failed": 0}
    # each scan is a study of its own: the two urgent ones are escalated, one message each
    assert sorted(e.scan_id for e in sent) == sorted([ids[1], ids[3]])
    assert all(e.study_id for e in sent) and len({e.study_id for e in sent}) == 2
    assert {e.model_version for e in sent} == {BRIGHTNESS_MODEL_VERSION}
    rows = {row["scan_id"]: row for row in reads.list_results(engine)}
    assert [rows[i]["urgent"] for i in ids] == [False, True, False, True]
    assert [rows[i]["predicted"] for i in ids] == [0, 2, 0, 2]
    assert reads.status_counts(engine) == {"done": 4}
    # what the model saw, for drift: each scan's mean grey level and its spread (noise of
    # +-8 grey levels: a standard deviation of about 4.9)
    pixels = brightness_scans([30, 220, 60, 240], seed=4).reshape(4, -1)
    assert [rows[i]["mean_intensity"] for i in ids] == pytest.approx(pixels.mean(axis=1))
    assert [rows[i]["mean_intensity"] for i in ids] == pytest.approx([30, 220, 60, 240], abs=1)
    assert [rows[i]["contrast"] for i in ids] == pytest.approx([4.9] * 4, abs=0.3)

    # delivered again: nothing new, and no escalation re-sent while none is missing
    for escalation in sent:
        assert worklist.add_urgent_cases(engine, [escalation]) == [escalation.scan_id]
    again: list[Escalation] = []
    assert classify_scans(engine, ids, model, 3, again.append)["classified"] == 0
    assert again == [] and len(reads.list_results(engine)) == 4


def test_the_predicted_class_follows_the_cards_class_weights(engine, model_root: Path) -> None:
    """A scan of mean 110 is about P = (0.57, 0.28, 0.14): class 0 by plain argmax, class 1
    once the card weighs class 1 by 3; its urgent flag depends on the threshold alone."""
    plain = current_model(get_settings())
    card = plain.card.model_copy(update={"class_weights": [1.0, 3.0, 1.0]})
    weighted = dataclasses.replace(plain, card=card)
    for model, expected in ((plain, 0), (weighted, 1)):
        ids = add(engine, [110, 110])
        assert classify_scans(engine, ids, model, 3, lambda _: None)["urgent"] == 0
        rows = {row["scan_id"]: row for row in reads.list_results(engine)}
        assert [rows[i]["predicted"] for i in ids] == [expected, expected]


def test_a_repeated_job_re_sends_an_escalation_whose_publish_was_lost(
    engine, model_root: Path
) -> None:
    ids = add(engine, [230])
    model = current_model(get_settings())
    classify_scans(engine, ids, model, 3, lambda escalation: None)  # the publish was lost
    resent: list[Escalation] = []
    classify_scans(engine, ids, model, 3, resent.append)
    assert [e.scan_id for e in resent] == ids
    assert worklist.add_urgent_cases(engine, resent) == [resent[0].scan_id]
    assert worklist.add_urgent_cases(engine, resent) == []  # the worklist holds it once
    assert len(reads.worklist(engine)) == 1


def test_a_scan_past_its_attempts_fails_with_the_reason(engine, model_root: Path) -> None:
    ids = add(engine, [30, 40])
    for _ in range(2):  # two deliveries whose worker died before recording anything
        ledger.claim(engine, ids[:1], max_attempts=2)
    model = current_model(get_settings())
    with pytest.raises(ledger.Redelivered):  # a lost worker's batch: it claims nothing
        classify_scans(engine, ids, model, 2, lambda e: None, refuse_redelivered=True)
    assert [reads.history(engine, sid)["attempts"] for sid in ids] == [2, 0]
    outcome = classify_scans(engine, ids, model, 2, lambda e: None)
    assert outcome == {"classified": 1, "urgent": 0, "failed": 1}
    failed = reads.history(engine, ids[0])
    assert failed["status"] == "failed" and "gave up after 2 attempts" in failed["error"]
    assert reads.history(engine, ids[1])["status"] == "done"


def test_a_database_error_after_the_claim_leaves_the_scans_queued_uncounted(
    engine, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = add(engine, [30, 230])
    model = current_model(get_settings())
    record_and_decide = ledger.record_and_decide

    def outage(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise sqlalchemy.exc.OperationalError("INSERT ...", {}, Exception("connection reset"))

    monkeypatch.setattr(ledger, "record_and_decide", outage)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        classify_scans(engine, ids, model, 2, lambda e: None)
    for scan_id in ids:
        found = reads.history(engine, scan_id)
        assert (found["status"], found["attempts"]) == ("queued", 0)
        assert "OperationalError" in found["error"] and "INSERT" not in found["error"]
    monkeypatch.setattr(ledger, "record_and_decide", record_and_decide)  # the database is back
    sent: list[Escalation] = []
    assert classify_scans(engine, ids, model, 2, sent.append)["classified"] == 2
    assert [e.scan_id for e in sent] == [ids[1]]
    assert reads.history(engine, ids[0])["error"] is None


def test_results_and_their_study_decisions_commit_together_or_not_at_all(
    engine, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision fails after the results were written in the same transaction: nothing
    of the job is visible (no result without its decision), and the retry does both."""
    ids = add(engine, [30, 230])
    model = current_model(get_settings())
    decide = ledger.decide_ready_in
    seen_inside: list[int] = []
    # a plain reader (no BEGIN IMMEDIATE: under SQLite's WAL it reads the committed snapshot)
    reader = sqlalchemy.create_engine(engine.url)

    def decide_then_fail(connection, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        decide(connection, *args, **kwargs)  # results and decisions written, not committed
        with reader.connect() as other:
            seen_inside.append(other.scalar(sqlalchemy.text("SELECT count(*) FROM results")))
        raise sqlalchemy.exc.OperationalError("UPDATE ...", {}, Exception("connection reset"))

    monkeypatch.setattr(ledger, "decide_ready_in", decide_then_fail)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        classify_scans(engine, ids, model, 2, lambda e: None)
    reader.dispose()
    assert seen_inside == [0]  # while the decision ran, no reader saw the job's results
    assert reads.list_results(engine) == [] and reads.status_counts(engine) == {"queued": 2}
    assert {row["status"] for row in reads.list_studies(engine)} == {"queued"}
    monkeypatch.setattr(ledger, "decide_ready_in", decide)
    sent: list[Escalation] = []
    assert classify_scans(engine, ids, model, 2, sent.append)["classified"] == 2
    assert len(reads.list_results(engine)) == 2 and [e.scan_id for e in sent] == [ids[1]]
    assert {row["status"] for row in reads.list_studies(engine)} == {"classified"}


def test_a_worker_with_no_model_leaves_the_batch_waiting_not_failed(
    engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No model published yet: the task retries max_attempts times, then the scans wait."""
    monkeypatch.setenv("TRIAGE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("TRIAGE_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    ids = add(engine, [30, 230])

    outcome = classify.apply(args=[{"scan_ids": ids}]).get()

    assert outcome["waiting"] == 2
    assert reads.status_counts(engine) == {"queued": 2}
    for scan_id in ids:
        found = reads.history(engine, scan_id)
        assert found["attempts"] == 0 and "no usable model" in found["error"]
        assert found["error"].startswith("waiting after 2 retries")
        assert str(get_settings().resolved_model_dir) not in found["error"]


def test_a_repeated_job_decides_what_its_first_delivery_recorded_but_never_decided(
    engine, model_root: Path
) -> None:
    """The first delivery wrote its results and died before deciding the studies: the repeat
    claims nothing, yet decides them and escalates the urgent one."""
    ids = add(engine, [30, 230])
    model = current_model(get_settings())
    ledger.claim(engine, ids, max_attempts=3)
    probabilities = model.probabilities(brightness_scans([30, 230]))
    scored = [
        ledger.ScoredScan(sid, tuple(float(p) for p in row), int(row.argmax()), bool(row[2] > 0.5))
        for sid, row in zip(ids, probabilities, strict=True)
    ]
    ledger.record_results(engine, scored, model.version, "/m", 0.5, {})
    assert [row["p2"] for row in reads.list_studies(engine)] == [None, None]  # undecided
    sent: list[Escalation] = []
    outcome = classify_scans(engine, ids, model, 3, sent.append)
    assert outcome["classified"] == 0  # nothing claimed again
    assert [e.scan_id for e in sent] == [ids[1]]
    assert {row["status"] for row in reads.list_studies(engine)} == {"classified"}
