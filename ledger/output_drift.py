"""Drift without labels in what the model answers: each day's per-scan P(urgent) and share
flagged urgent, per model version, against the card's `reference` (the out-of-fold scans of
its training set: `p_urgent_histogram`, `flagged_urgent_share`).

The day's P(urgent) histogram, in the reference's bins, is compared with the reference by the
population stability index, PSI = sum((observed - expected) * ln(observed / expected)) over
the bins. A day is judged when it has MIN_SCANS_JUDGED scans or more, and is outside above
PSI_ALERT, the usual line for a shift that needs looking at. By chance alone a day of N scans
drawn from the reference has a PSI of about (bins - 1) / N: 0.045 for 10 bins and 200 scans.
What moves it: other inputs (a new scanner, another protocol) and another mix of patients
than the training set's (the reference is of the archive's class mix, not the hospital's):
an alert says the output has moved, not which of the two moved it.

Aggregated in the database (one GROUP BY a model version), so the page does not read the
scans one by one.
"""

from __future__ import annotations

import math
from datetime import UTC, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.reads import fetch_rows
from ledger.statements import models, results
from schemas.tables import utcnow

PSI_ALERT = 0.25
MIN_SCANS_JUDGED = 200
FLOOR = 1e-4  # a bin's share is at least this in the index (an empty bin would be infinite)


def output_references(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per model version, its card's P(urgent) histogram (`edges`, `shares`) and the share of
    its reference scans flagged urgent; versions whose card has none are left out."""
    with engine.begin() as connection:
        rows = connection.execute(sa.select(models.c.version, models.c.card)).all()
    found = {}
    for version, card in rows:
        reference = (card or {}).get("reference") or {}
        histogram = reference.get("p_urgent_histogram") or {}
        edges, shares = histogram.get("edges"), histogram.get("shares")
        if edges and shares and len(edges) == len(shares) + 1:
            found[version] = {
                "edges": [float(edge) for edge in edges],
                "shares": [float(share) for share in shares],
                "flagged": reference.get("flagged_urgent_share"),
            }
    return found


def output_by_day(
    engine: Engine, references: dict[str, dict[str, Any]], days: int = 30
) -> list[dict[str, Any]]:
    """One entry per (model version with a reference, day) over the last `days`: scans, the
    share flagged urgent, the P(urgent) shares in the reference's bins, PSI, judged, outside."""
    since = (utcnow() - timedelta(days=days)).astimezone(UTC)
    entries = []
    for version, reference in sorted(references.items()):
        edges = reference["edges"]
        bin_of = sa.case(
            *((results.c.p2 < edge, index) for index, edge in enumerate(edges[1:-1])),
            else_=len(edges) - 2,
        )
        day = _utc_day(engine, results.c.classified_at)
        query = (
            sa.select(
                day.label("scan_day"),
                bin_of.label("p_bin"),
                sa.func.count().label("scans"),
                sa.func.sum(sa.case((results.c.urgent, 1), else_=0)).label("flagged"),
            )
            .where(results.c.model_version == version, results.c.classified_at >= since)
            .group_by(sa.literal_column("scan_day"), sa.literal_column("p_bin"))
        )  # by label: PostgreSQL cannot match a CASE of bound parameters written twice
        by_day: dict[str, list[tuple[int, int, int]]] = {}
        for row in fetch_rows(engine, query):
            by_day.setdefault(str(row["scan_day"]), []).append(
                (int(row["p_bin"]), int(row["scans"]), int(row["flagged"] or 0))
            )
        entries += [_day_entry(version, day, bins, reference) for day, bins in by_day.items()]
    return sorted(entries, key=lambda entry: (entry["model_version"], entry["day"]))


def _utc_day(engine: Engine, moment: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The UTC calendar day of a timestamp column (PostgreSQL's date() would take the
    session's time zone; SQLite keeps UTC)."""
    if engine.dialect.name == "postgresql":
        return sa.func.date(sa.func.timezone("UTC", moment))
    return sa.func.date(moment)


def _day_entry(
    version: str, day: str, bins: list[tuple[int, int, int]], reference: dict[str, Any]
) -> dict[str, Any]:
    counts = [0] * len(reference["shares"])
    for index, scans, _flagged in bins:
        counts[index] += scans
    total = sum(counts)
    shares = [count / total for count in counts]
    index = stability_index(shares, reference["shares"])
    judged = total >= MIN_SCANS_JUDGED
    return {
        "model_version": version,
        "day": day,
        "scans": total,
        "flagged_share": sum(flagged for _, _, flagged in bins) / total,
        "reference_flagged": reference["flagged"],
        "shares": shares,
        "psi": index,
        "judged": judged,
        "outside": judged and index > PSI_ALERT,
    }


def stability_index(observed: list[float], expected: list[float]) -> float:
    """The population stability index of two distributions over the same bins."""
    if len(observed) != len(expected):
        raise ValueError(f"{len(observed)} observed bins against {len(expected)} expected")
    total = 0.0
    for seen, wanted in zip(observed, expected, strict=True):
        seen, wanted = max(seen, FLOOR), max(wanted, FLOOR)
        total += (seen - wanted) * math.log(seen / wanted)
    return total


def latest_judged(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model version, its latest judged day: what the output drift alert reports."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda entry: entry["day"]):  # oldest first: last wins
        if entry["judged"]:
            latest[entry["model_version"]] = entry
    return latest
