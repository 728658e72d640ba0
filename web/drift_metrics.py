"""The model's performance and drift for Prometheus, at /metrics (a token or session with the
view_performance action): today's PPV and urgent share per model version, and the days in a
row its PPV has been outside the card's band, with the drift alert; and without labels, the
median input statistics of the latest judged day with the input drift alert, and the P(urgent) stability index against the card with the output drift alert."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from ledger import output_drift, performance
from web.identity import Principal, permitted
from web.permissions import Action

router = APIRouter(include_in_schema=False)


def registry_of(engine) -> CollectorRegistry:  # noqa: ANN001 - Engine
    """A fresh registry filled from the ledger now (one scrape, one read)."""
    registry = CollectorRegistry()
    labels = ["model_version"]
    ppv = Gauge(
        "triage_urgent_ppv",
        "PPV of urgent flags on the latest day with findings.",
        labels,
        registry=registry,
    )
    share = Gauge(
        "triage_urgent_share",
        "Share of studies flagged urgent on the latest day.",
        labels,
        registry=registry,
    )
    outside = Gauge(
        "triage_urgent_ppv_days_outside_band",
        "Latest days in a row whose PPV was outside the card's expected urgent precision.",
        labels, registry=registry,
    )  # fmt: skip
    alert = Gauge(
        "triage_drift_alert", f"1 when the PPV was outside the band {performance.DRIFT_DAYS} days in a row.",
        labels, registry=registry,
    )  # fmt: skip
    marked = performance.with_bands(
        performance.reader_agreement(engine), performance.reference_bands(engine)
    )
    for row in marked:  # oldest first: the latest day's value is the one left
        if row["ppv"] is not None:
            ppv.labels(row["model_version"]).set(row["ppv"])
    for row in performance.output_distribution(engine):
        share.labels(row["model_version"]).set(row["urgent_share"])
    for version, days in performance.days_outside(marked).items():
        outside.labels(version).set(days)
        alert.labels(version).set(1 if days >= performance.DRIFT_DAYS else 0)
    _input_gauges(engine, registry)
    _output_gauges(engine, registry)
    return registry


def _output_gauges(engine, registry: CollectorRegistry) -> None:  # noqa: ANN001 - Engine
    """Per model version, its latest judged day's P(urgent) stability index against the
    card's reference, and whether it was above the alert line."""
    index = Gauge(
        "triage_output_stability_index",
        f"P(urgent) population stability index against the card's reference, on the latest day"
        f" with {output_drift.MIN_SCANS_JUDGED} or more scans.",
        ["model_version"], registry=registry,
    )  # fmt: skip
    alert = Gauge(
        "triage_output_drift_alert",
        f"1 when that index was above {output_drift.PSI_ALERT}.",
        ["model_version"], registry=registry,
    )  # fmt: skip
    entries = output_drift.output_by_day(engine, output_drift.output_references(engine))
    for version, day in output_drift.latest_judged(entries).items():
        index.labels(version).set(day["psi"])
        alert.labels(version).set(1 if day["outside"] else 0)


def _input_gauges(engine, registry: CollectorRegistry) -> None:  # noqa: ANN001 - Engine
    """Per model version and input statistic, its latest judged day's median and whether
    that was outside the card's reference range."""
    labels = ["model_version", "statistic"]
    median = Gauge(
        "triage_input_median",
        f"Median per-scan input statistic on the latest day with {performance.MIN_SCANS_JUDGED}"
        " or more scans.",
        labels, registry=registry,
    )  # fmt: skip
    alert = Gauge(
        "triage_input_drift_alert",
        "1 when that median was outside the card's reference interquartile range.",
        labels, registry=registry,
    )  # fmt: skip
    marked = performance.with_input_bands(
        performance.input_distribution(engine), performance.input_bands(engine)
    )
    for version, day in performance.latest_judged(marked).items():
        for name in performance.INPUT_STATISTICS:
            if day[name]["band"] is not None:
                median.labels(version, name).set(day[name]["quartiles"][1])
                alert.labels(version, name).set(1 if day[name]["outside"] else 0)


@router.get("/metrics")
def metrics(
    request: Request, principal: Annotated[Principal, Depends(permitted(Action.view_performance))]
) -> Response:
    body = generate_latest(registry_of(request.app.state.engine))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
