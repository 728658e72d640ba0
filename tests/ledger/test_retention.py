"""Retention in the ledger: which pixels go and when, what stays whatever its age, bounded
transactions, the dry run, and whole studies with keep_results_days."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from ledger import retention
from tests.ledger.retention_cases import PATIENT_MODULES, make_cases, scans_of, snapshot

KEEP = 30


def _largest_deletes(engine) -> list[int]:  # noqa: ANN001
    """Row counts of every DELETE the engine runs from now on (appended as they run)."""
    counts: list[int] = []

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _count(_conn, cursor, statement, *_args) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("DELETE"):
            counts.append(cursor.rowcount)

    return counts


def test_nothing_goes_before_its_time(engine) -> None:  # noqa: ANN001
    cases = make_cases(engine)
    before = snapshot(engine)
    report = retention.purge(engine, KEEP, now=cases.between + timedelta(days=KEEP - 1))
    assert (report.pixels, report.key_images, report.finished) == (0, 0, True)
    assert snapshot(engine) == before


def test_pixels_of_old_decided_studies_go_and_nothing_else(engine) -> None:  # noqa: ANN001
    cases = make_cases(engine)
    before = snapshot(engine)
    gone = scans_of(engine, [*cases.purgeable, cases.acknowledged])
    deletes = _largest_deletes(engine)
    report = retention.purge(engine, KEEP, now=cases.between + timedelta(days=KEEP), batch=7)
    after = snapshot(engine)
    assert set(after["pixels"]) == set(before["pixels"]) - gone
    assert report.pixels == len(gone) == 16 and report.key_images == 1
    assert after["saliency"] == before["saliency"] - {cases.acknowledged}
    assert cases.open_case in after["saliency"] and cases.unlisted in after["saliency"]
    for kept in ("scans", "results", "studies", "urgent_cases", "deliveries"):
        assert after[kept] == before[kept], kept
    assert all(after["pixels"][sid] == before["pixels"][sid] for sid in after["pixels"])
    # 40 pixel rows in windows of 7: every DELETE removed at most one window
    assert report.batches == 6 and deletes and max(deletes) <= 7
    assert retention.purge(engine, KEEP, now=cases.between + timedelta(days=KEEP)).pixels == 0


def test_open_cases_unsent_and_undecided_studies_keep_their_pixels_at_any_age(engine) -> None:  # noqa: ANN001
    cases = make_cases(engine, plain=0)
    kept = scans_of(engine, [cases.open_case, cases.unlisted, cases.unsent, cases.undecided])
    retention.purge(engine, KEEP, now=cases.between + timedelta(days=10 * 365))
    assert kept <= set(snapshot(engine)["pixels"])


def test_a_dry_run_counts_what_would_go_and_changes_nothing(engine) -> None:  # noqa: ANN001
    cases = make_cases(engine)
    before = snapshot(engine)
    later = cases.between + timedelta(days=KEEP)
    dry = retention.purge(engine, KEEP, now=later, dry_run=True, batch=5)
    assert snapshot(engine) == before
    real = retention.purge(engine, KEEP, now=later, batch=5)
    assert (dry.dry_run, dry.pixels, dry.key_images) == (True, real.pixels, real.key_images)
    assert real.pixels == 16


def test_max_batches_stops_a_pass_and_the_next_one_resumes_the_walk(engine) -> None:  # noqa: ANN001
    cases = make_cases(engine)
    later = cases.between + timedelta(days=KEEP)
    first = retention.purge(engine, KEEP, now=later, batch=4, max_batches=2)
    assert (first.batches, first.finished) == (2, False) and first.resume_after
    assert first.pixels <= 8 and first.pixels_held == 8 - first.pixels  # what it walked
    rest = retention.purge(engine, KEEP, now=later, batch=4, resume_after=first.resume_after)
    assert rest.finished and rest.resume_after is None and first.pixels + rest.pixels == 16
    assert first.pixels_held + rest.pixels_held == retention.holdings(engine).pixels == 20
    assert "resume_after" not in first.as_dict()  # a scan id: never in the report's output


def test_keep_results_days_removes_old_studies_whole_but_not_what_is_kept(engine) -> None:  # noqa: ANN001
    cases = make_cases(engine)
    before = snapshot(engine)
    later = cases.between + timedelta(days=400)
    gone_studies = {*cases.purgeable, cases.acknowledged}
    gone_scans = scans_of(engine, list(gone_studies))
    dry = retention.purge(engine, KEEP, 400, now=later, dry_run=True, batch=3)
    assert snapshot(engine) == before
    report = retention.purge(engine, KEEP, 400, now=later, batch=3)
    after = snapshot(engine)
    # 16 pixel rows with their studies, 4 of the young study (past keep_pixels_days)
    assert (report.studies, report.scans, report.pixels) == (4, 16, 20)
    assert (dry.studies, dry.scans, dry.pixels) == (4, 16, 20)
    assert {row["id"] for row in after["studies"]} == {
        row["id"] for row in before["studies"]
    } - gone_studies
    # the patient and study modules stay with the studies kept, and go with the others
    assert all(row["patient_modules"] == PATIENT_MODULES for row in before["studies"])
    assert {row["id"] for row in after["studies"] if row["patient_modules"]} == {
        row["id"] for row in after["studies"]
    }
    assert {row["id"] for row in after["scans"]} == {
        row["id"] for row in before["scans"]
    } - gone_scans
    assert {row["scan_id"] for row in after["results"]} == {
        row["scan_id"] for row in before["results"]
    } - gone_scans
    assert [row for row in before["deliveries"] if row["study_id"] not in gone_studies] == after[
        "deliveries"
    ]
    assert [row for row in before["urgent_cases"] if row["study_id"] not in gone_studies] == after[
        "urgent_cases"
    ]
    # the young study, decided after the results cutoff, keeps its rows; its pixels went
    assert scans_of(engine, [cases.young]) and not scans_of(engine, [cases.young]) & set(
        after["pixels"]
    )


def test_holdings_count_the_pixels_left_and_the_oldest(engine) -> None:  # noqa: ANN001
    assert retention.holdings(engine) == retention.Holdings(0, None)
    cases = make_cases(engine, plain=1, slices=2)
    held = retention.holdings(engine)
    assert held.pixels == 14 and held.oldest_received_at is not None
    assert held.oldest_received_at <= cases.between
    report = retention.purge(engine, KEEP, now=cases.between + timedelta(days=KEEP), batch=3)
    left = retention.holdings(engine)
    assert left.pixels == 10 and (report.pixels_held, report.oldest_pixels_at) == left
    assert left.oldest_received_at is not None and left.oldest_received_at > held.oldest_received_at
    dry = retention.purge(engine, KEEP, now=cases.between + timedelta(days=KEEP), dry_run=True)
    assert dry.pixels_held is None


def test_a_batch_must_hold_a_row(engine) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="batch must be at least 1"):
        retention.purge(engine, KEEP, batch=0)
