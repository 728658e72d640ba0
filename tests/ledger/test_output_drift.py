"""Drift without labels in the model's output: each day's per-scan P(urgent) against the
card's reference histogram (population stability index), aggregated on a real ledger
(SQLite and PostgreSQL); the index and the alert rule on plain values."""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
import pytest

from ledger import output_drift
from ledger import scans as ledger
from ledger.statements import results
from schemas.tables import utcnow

EDGES = [round(0.1 * index, 1) for index in range(11)]
SHARES = [0.5, 0.2, 0.1, 0.05, 0.05, 0.03, 0.03, 0.02, 0.01, 0.01]  # mostly calm scans
REFERENCE = {"p_urgent_histogram": {"edges": EDGES, "shares": SHARES}, "flagged_urgent_share": 0.1}


def classified(engine, p2: np.ndarray, version: str, days_ago: int = 0) -> None:  # noqa: ANN001
    """Scans classified by `version` `days_ago` days ago with these P(urgent), flagged at 0.5."""
    new = [ledger.NewScan(str(uuid.uuid4()), bytes(4096), None, "test") for _ in p2]
    ledger.add_scans(engine, new, "routine")
    ids = [scan.scan_id for scan in new]
    ledger.claim(engine, ids, max_attempts=3)
    scored = [
        ledger.ScoredScan(sid, (1.0 - float(p), 0.0, float(p)), 2 if p >= 0.5 else 0, p >= 0.5)
        for sid, p in zip(ids, p2, strict=True)
    ]
    card = {"version": version, "reference": REFERENCE}
    ledger.record_results(engine, scored, version, f"/models/{version}", 0.5, card)
    with engine.begin() as connection:
        connection.execute(
            results.update()
            .where(results.c.scan_id.in_(ids))
            .values(classified_at=utcnow() - timedelta(days=days_ago))
        )


def like_the_reference(count: int, seed: int) -> np.ndarray:
    """P(urgent) values drawn from the reference histogram (uniform inside each bin)."""
    rng = np.random.default_rng(seed)
    bins = rng.choice(len(SHARES), size=count, p=np.array(SHARES) / sum(SHARES))
    return (bins + rng.uniform(0.01, 0.99, size=count)) / 10


def test_each_day_is_binned_as_the_reference_and_judged(engine) -> None:  # noqa: ANN001
    classified(engine, like_the_reference(300, seed=1), "v1", days_ago=2)  # as trained on
    classified(engine, np.full(250, 0.95), "v1", days_ago=1)  # every scan looks urgent
    classified(engine, np.full(50, 0.95), "v1")  # the same, too few scans to judge
    classified(engine, np.full(10, 0.95), "v1", days_ago=40)  # older than the window

    references = output_drift.output_references(engine)
    assert references["v1"]["shares"] == SHARES and references["v1"]["flagged"] == 0.1
    entries = output_drift.output_by_day(engine, references, days=30)

    days = [(utcnow() - timedelta(days=ago)).date().isoformat() for ago in (2, 1, 0)]
    assert [(e["day"], e["scans"], e["judged"], e["outside"]) for e in entries] == [
        (days[0], 300, True, False),
        (days[1], 250, True, True),
        (days[2], 50, False, False),
    ]
    calm, urgent, _ = entries
    assert calm["psi"] < 0.1
    assert urgent["psi"] > output_drift.PSI_ALERT and urgent["shares"][-1] == 1.0
    assert urgent["flagged_share"] == 1.0 and calm["flagged_share"] == pytest.approx(
        float(np.mean(like_the_reference(300, seed=1) >= 0.5))
    )
    assert output_drift.latest_judged(entries)["v1"]["day"] == days[1]


def test_a_version_without_a_reference_histogram_is_left_out(engine) -> None:  # noqa: ANN001
    classified(engine, np.full(5, 0.2), "v1")
    without_histogram = {"version": "v2", "reference": {"flagged_urgent_share": 0.1}}
    new = [ledger.NewScan(str(uuid.uuid4()), bytes(4096), None, "test")]
    ledger.add_scans(engine, new, "routine")
    ledger.claim(engine, [new[0].scan_id], max_attempts=3)
    scored = [ledger.ScoredScan(new[0].scan_id, (1.0, 0.0, 0.0), 0, False)]
    ledger.record_results(engine, scored, "v2", "/models/v2", 0.5, without_histogram)
    assert set(output_drift.output_references(engine)) == {"v1"}


def test_the_stability_index() -> None:
    assert output_drift.stability_index(SHARES, SHARES) == 0.0
    moved = SHARES[::-1]
    assert output_drift.stability_index(moved, SHARES) == pytest.approx(
        sum((o - e) * np.log(o / e) for o, e in zip(moved, SHARES, strict=True))
    )
    assert output_drift.stability_index([1.0] + [0.0] * 9, SHARES) > 1  # empty bins: floored
    with pytest.raises(ValueError, match="3 observed bins against 10 expected"):
        output_drift.stability_index([0.2, 0.3, 0.5], SHARES)


def test_a_day_drawn_from_the_reference_is_rarely_outside() -> None:
    """The alert's false-alarm rate at the smallest judged day, by simulation."""
    rng = np.random.default_rng(0)
    alarms = 0
    for _ in range(500):
        counts = rng.multinomial(output_drift.MIN_SCANS_JUDGED, SHARES)
        shares = list(counts / counts.sum())
        alarms += output_drift.stability_index(shares, SHARES) > output_drift.PSI_ALERT
    assert alarms <= 2
