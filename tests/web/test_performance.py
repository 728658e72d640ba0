"""Performance from findings and drift against the card's band, and input and output drift
against the card's reference: the page and /metrics."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from ledger import output_drift, performance
from ledger import scans as scan_ledger
from ledger.findings import NewFinding, add_finding
from ledger.statements import models, studies
from schemas.tables import utcnow
from tests.ledger.test_output_drift import REFERENCE as OUTPUT_REFERENCE
from tests.ledger.test_output_drift import classified, like_the_reference
from tests.web.conftest import log_in
from tests.web.ledger_rows import decided_study
from tests.web.test_api import bearer

BAND = {"estimate": 0.7, "low": 0.6, "high": 0.8}


def flagged_days(engine, days: int, confirmed: bool) -> None:  # noqa: ANN001
    """One urgent study decided on each of the last `days` days, read (not) urgent."""
    for day in range(days):
        uid = f"1.2.3.77{day:02d}"
        decided_study(engine, uid, [0.9])
        with engine.begin() as connection:
            connection.execute(
                studies.update()
                .where(studies.c.study_uid == uid)
                .values(classified_at=utcnow() - timedelta(days=day))
            )
        add_finding(engine, uid, "alice", NewFinding(confirmed, 2 if confirmed else 0))
    with engine.begin() as connection:
        card = connection.execute(sa.select(models.c.card).where(models.c.version == "v1")).scalar()
        card = {**card, "expected_unseen": {"urgent_precision": BAND}}
        connection.execute(models.update().where(models.c.version == "v1").values(card=card))


def test_a_week_of_unconfirmed_flags_raises_the_drift_alert(client, engine) -> None:  # noqa: ANN001
    flagged_days(engine, performance.DRIFT_DAYS, confirmed=False)
    marked = performance.with_bands(
        performance.reader_agreement(engine), performance.reference_bands(engine)
    )
    assert [row["ppv"] for row in marked] == [0.0] * performance.DRIFT_DAYS
    assert all(row["outside"] and row["band"] == (0.6, 0.8) for row in marked)
    assert performance.days_outside(marked) == {"v1": performance.DRIFT_DAYS}
    log_in(client, "alice")
    assert "Drift: the PPV of model v1" in client.get("/performance").text
    scraped = client.get("/metrics", headers=bearer(engine, "prometheus", "operator")).text
    assert 'triage_drift_alert{model_version="v1"} 1.0' in scraped
    assert 'triage_urgent_ppv{model_version="v1"} 0.0' in scraped
    assert 'triage_urgent_share{model_version="v1"} 1.0' in scraped


def test_confirmed_flags_stay_inside_no_alert(client, engine) -> None:  # noqa: ANN001
    flagged_days(engine, 3, confirmed=True)  # PPV 1.0: above the band, 3 days: no alert yet
    marked = performance.with_bands(
        performance.reader_agreement(engine), performance.reference_bands(engine)
    )
    assert performance.days_outside(marked) == {"v1": 3}
    scraped = client.get("/metrics", headers=bearer(engine, "prometheus", "operator")).text
    assert 'triage_drift_alert{model_version="v1"} 0.0' in scraped
    assert client.get("/metrics").status_code == 401


REFERENCE = {
    "mean_intensity": {"quantiles": {"0.05": 30.0, "0.25": 40.0, "0.5": 50.0, "0.75": 60.0}},
    "contrast": {"quantiles": {"0.25": 10.0, "0.75": 30.0}},
}


def seen_today(engine, count: int, mean: float, contrast: float) -> None:  # noqa: ANN001
    """`count` scans classified by v1 today with these input statistics; v1's card states
    REFERENCE."""
    new = [scan_ledger.NewScan(str(uuid.uuid4()), bytes(4096), None, "f") for _ in range(count)]
    ids = scan_ledger.add_scans(engine, new, "routine").new
    scan_ledger.claim(engine, ids, max_attempts=3)
    scored = [scan_ledger.ScoredScan(i, (1.0, 0.0, 0.0), 0, False, mean, contrast) for i in ids]
    card = {"version": "v1", "reference": REFERENCE}
    scan_ledger.record_results(engine, scored, "v1", "/m", 0.5, card)


def test_inputs_outside_the_cards_reference_raise_the_input_alert(client, engine) -> None:  # noqa: ANN001
    seen_today(engine, performance.MIN_SCANS_JUDGED, mean=120.0, contrast=20.0)
    log_in(client, "alice")
    page = client.get("/performance").text
    today = utcnow().date().isoformat()
    assert (
        f"Input drift: the median mean intensity of the scans model v1 classified on {today} "
        "was 120.0, outside its card's reference range 40.0-60.0." in page
    )
    assert "Input drift: the median contrast" not in page
    assert '<td class="num mean_intensity outside">120.0 / 120.0 / 120.0</td>' in page
    assert '<td class="num contrast">20.0 / 20.0 / 20.0</td>' in page
    assert '<td class="num">10.0-30.0</td>' in page
    scraped = client.get("/metrics", headers=bearer(engine, "prometheus", "operator")).text
    assert 'triage_input_drift_alert{model_version="v1",statistic="mean_intensity"} 1.0' in scraped
    assert 'triage_input_drift_alert{model_version="v1",statistic="contrast"} 0.0' in scraped
    assert 'triage_input_median{model_version="v1",statistic="mean_intensity"} 120.0' in scraped


def test_a_day_too_small_to_judge_is_shown_without_an_alert(client, engine) -> None:  # noqa: ANN001
    seen_today(engine, performance.MIN_SCANS_JUDGED - 1, mean=120.0, contrast=20.0)
    log_in(client, "alice")
    page = client.get("/performance").text
    assert '<td class="num mean_intensity">120.0 / 120.0 / 120.0</td>' in page
    assert "Input drift" not in page
    scraped = client.get("/metrics", headers=bearer(engine, "prometheus", "operator")).text
    assert "triage_input_drift_alert{" not in scraped


def test_a_day_of_urgent_looking_scans_raises_the_output_alert(client, engine) -> None:  # noqa: ANN001
    classified(engine, like_the_reference(output_drift.MIN_SCANS_JUDGED, seed=2), "v1", 1)
    classified(engine, [0.95] * output_drift.MIN_SCANS_JUDGED, "v2")
    with engine.begin() as connection:  # v2's card states the same output reference
        connection.execute(
            models.update()
            .where(models.c.version == "v2")
            .values(card={"version": "v2", "reference": OUTPUT_REFERENCE})
        )
    log_in(client, "alice")
    page = client.get("/performance").text
    today = utcnow().date().isoformat()
    assert f"Output drift: the P(urgent) of the scans model v2 classified on {today}" in page
    assert "Output drift: the P(urgent) of the scans model v1" not in page
    scraped = client.get("/metrics", headers=bearer(engine, "prometheus", "operator")).text
    assert 'triage_output_drift_alert{model_version="v1"} 0.0' in scraped
    assert 'triage_output_drift_alert{model_version="v2"} 1.0' in scraped
    assert 'triage_output_stability_index{model_version="v2"}' in scraped
