"""Drift without labels in what the workers see: each day's input statistics per model
version, against the interquartile range the card's `reference` states.

Aggregation on a real ledger (SQLite and PostgreSQL); the band rule on plain entries.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from ledger import performance
from ledger import scans as ledger
from ledger.statements import results
from schemas.tables import utcnow

REFERENCE = {
    "mean_intensity": {"quantiles": {"0.05": 20.0, "0.25": 40.0, "0.5": 50.0, "0.75": 60.0}},
    "contrast": {"quantiles": {"0.25": 10.0, "0.75": 30.0, "0.95": 45.0}},
}


def classified(engine, stats: list[tuple[float, float] | None], version: str, days_ago: int = 0):  # noqa: ANN001, ANN201
    """Scans classified by `version` `days_ago` days ago with these (mean, contrast) each
    (None: a result recorded before the ledger kept them)."""
    new = [ledger.NewScan(str(uuid.uuid4()), bytes(4096), None, "test") for _ in stats]
    ledger.add_scans(engine, new, "routine")
    ids = [scan.scan_id for scan in new]
    ledger.claim(engine, ids, max_attempts=3)
    scored = [
        ledger.ScoredScan(sid, (1.0, 0.0, 0.0), 0, False, *(pair or (None, None)))
        for sid, pair in zip(ids, stats, strict=True)
    ]
    card = {"version": version, "reference": REFERENCE}
    ledger.record_results(engine, scored, version, f"/models/{version}", 0.5, card)
    with engine.begin() as connection:
        connection.execute(
            results.update()
            .where(results.c.scan_id.in_(ids))
            .values(classified_at=utcnow() - timedelta(days=days_ago))
        )


def test_input_statistics_are_aggregated_by_model_version_and_day(engine) -> None:  # noqa: ANN001
    classified(engine, [(10.0, 1.0), (20.0, 2.0), (30.0, 3.0), (40.0, 4.0), None], "v1", 1)
    classified(engine, [(100.0, 50.0), (110.0, 70.0)], "v1")
    classified(engine, [(5.0, 5.0)], "v2")
    classified(engine, [(200.0, 9.0)], "v1", days_ago=40)  # older than the window

    entries = performance.input_distribution(engine, days=30)

    today, yesterday = utcnow().date(), (utcnow() - timedelta(days=1)).date()
    assert [(e["model_version"], e["day"], e["scans"]) for e in entries] == [
        ("v1", yesterday.isoformat(), 4),
        ("v1", today.isoformat(), 2),
        ("v2", today.isoformat(), 1),
    ]
    assert entries[0]["mean_intensity"]["quartiles"] == pytest.approx([17.5, 25.0, 32.5])
    assert entries[0]["contrast"]["quartiles"] == pytest.approx([1.75, 2.5, 3.25])
    assert entries[1]["mean_intensity"]["quartiles"][1] == pytest.approx(105.0)
    assert entries[1]["contrast"]["quartiles"][1] == pytest.approx(60.0)
    assert performance.input_bands(engine) == {
        "v1": {"mean_intensity": (40.0, 60.0), "contrast": (10.0, 30.0)},
        "v2": {"mean_intensity": (40.0, 60.0), "contrast": (10.0, 30.0)},
    }


def entry(version: str, day: str, scans: int, median_mean: float, median_contrast: float) -> dict:
    return {
        "model_version": version,
        "day": day,
        "scans": scans,
        "mean_intensity": {"quartiles": [median_mean - 5, median_mean, median_mean + 5]},
        "contrast": {"quartiles": [median_contrast - 2, median_contrast, median_contrast + 2]},
    }


BANDS = {"v1": {"mean_intensity": (40.0, 60.0), "contrast": (10.0, 30.0)}}
JUDGED = performance.MIN_SCANS_JUDGED


@pytest.mark.parametrize(
    ("median_mean", "median_contrast", "outside"),
    [
        (50.0, 20.0, (False, False)),
        (40.0, 30.0, (False, False)),  # the band's ends are inside
        (39.9, 20.0, (True, False)),
        (50.0, 30.1, (False, True)),
        (75.0, 2.0, (True, True)),
    ],
)
def test_a_days_median_outside_the_cards_interquartile_range_is_outside(
    median_mean: float, median_contrast: float, outside: tuple[bool, bool]
) -> None:
    marked = performance.with_input_bands(
        [entry("v1", "2026-12-01", JUDGED, median_mean, median_contrast)], BANDS
    )
    assert (marked[0]["mean_intensity"]["outside"], marked[0]["contrast"]["outside"]) == outside
    assert marked[0]["mean_intensity"]["band"] == (40.0, 60.0)
    assert marked[0]["judged"]


def test_small_days_and_versions_without_a_reference_are_not_judged() -> None:
    marked = performance.with_input_bands(
        [
            entry("v1", "2026-12-01", JUDGED - 1, 200.0, 200.0),
            entry("v0", "2026-12-01", 500, 200.0, 200.0),  # its card has no reference
        ],
        BANDS,
    )
    assert [m["judged"] for m in marked] == [False, True]
    assert not any(m[name]["outside"] for m in marked for name in performance.INPUT_STATISTICS)
    assert marked[1]["contrast"]["band"] is None
    assert performance.latest_judged(marked) == {}


def test_the_alert_follows_the_latest_judged_day() -> None:
    marked = performance.with_input_bands(
        [
            entry("v1", "2026-12-02", 3, 200.0, 20.0),  # latest, but too few scans to judge
            entry("v1", "2026-11-30", JUDGED, 200.0, 20.0),
            entry("v1", "2026-12-01", JUDGED, 50.0, 20.0),
        ],
        BANDS,
    )
    latest = performance.latest_judged(marked)
    assert list(latest) == ["v1"] and latest["v1"]["day"] == "2026-12-01"
    assert not latest["v1"]["mean_intensity"]["outside"]
