"""How the model is holding up, per model version and day.

With labels (the readers' current findings): PPV of urgent flags, agreement by the reader's
class, and sensitivity where readers also reviewed studies the model did not flag. Without
labels (drift): the daily distribution of study P(2) and the share flagged urgent, and of
what the workers saw (each scan's mean intensity and contrast, `imaging.statistics`) against
the interquartile range of the training scans the card states (`reference`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.findings import current_findings
from ledger.reads import fetch_rows
from ledger.statements import models, results, studies
from schemas.tables import utcnow

P2_BINS = 10  # histogram bins of P(2) over [0, 1]
DRIFT_DAYS = 7  # this many latest days in a row outside the card's band: drift
INPUT_STATISTICS = ("mean_intensity", "contrast")  # per scan, as results and cards hold them
INPUT_BAND = ("0.25", "0.75")  # the card's reference quantiles that bound a day's median
# a day with fewer scans is shown but not judged: the median of 20 scans drawn from the
# reference falls outside its interquartile range on about 1 day in 80 by chance alone
MIN_SCANS_JUDGED = 20


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def reader_agreement(engine: Engine) -> list[dict[str, Any]]:
    """One entry per (model version, day of decision) with findings: counts, PPV of the urgent
    flag, sensitivity (None without reader-confirmed urgent studies) and, per reader class,
    the share the model put in the same class."""
    current = current_findings()
    query = (
        sa.select(
            studies.c.model_version,
            studies.c.classified_at,
            studies.c.urgent,
            studies.c.predicted,
            current.c.urgent.label("reader_urgent"),
            current.c.finding_class,
        )
        .join(current, current.c.study_id == studies.c.id)
        .where(studies.c.classified_at.is_not(None))
    )
    groups: dict[tuple[str, date], list[dict[str, Any]]] = defaultdict(list)
    for row in fetch_rows(engine, query):
        groups[(row["model_version"] or "-", row["classified_at"].date())].append(row)
    return [_agreement(version, day, rows) for (version, day), rows in sorted(groups.items())]


def _agreement(version: str, day: date, rows: list[dict[str, Any]]) -> dict[str, Any]:
    flagged = [row for row in rows if row["urgent"]]
    confirmed = sum(1 for row in flagged if row["reader_urgent"])
    reader_urgent = [row for row in rows if row["reader_urgent"]]
    caught = sum(1 for row in reader_urgent if row["urgent"])
    by_class = {}
    for finding_class in (0, 1, 2):
        read_so = [row for row in rows if row["finding_class"] == finding_class]
        same = sum(1 for row in read_so if row["predicted"] == finding_class)
        by_class[finding_class] = {"read": len(read_so), "agreement": _share(same, len(read_so))}
    return {
        "model_version": version,
        "day": day.isoformat(),
        "reviewed": len(rows),
        "flagged": len(flagged),
        "confirmed": confirmed,
        "ppv": _share(confirmed, len(flagged)),
        "reader_urgent": len(reader_urgent),
        "sensitivity": _share(caught, len(reader_urgent)),
        "by_class": by_class,
    }


def output_distribution(engine: Engine, days: int = 30) -> list[dict[str, Any]]:
    """One entry per (model version, day) over the last `days`: decided studies, the share
    flagged urgent, P(2) quartiles and a histogram of P(2) in P2_BINS bins."""
    since = utcnow() - timedelta(days=days)
    query = sa.select(
        studies.c.model_version, studies.c.classified_at, studies.c.p2, studies.c.urgent
    ).where(studies.c.classified_at >= since.astimezone(UTC), studies.c.p2.is_not(None))
    groups: dict[tuple[str, date], list[tuple[float, bool]]] = defaultdict(list)
    for row in fetch_rows(engine, query):
        day = row["classified_at"].date()
        groups[(row["model_version"] or "-", day)].append((row["p2"], bool(row["urgent"])))
    entries = []
    for (version, day), values in sorted(groups.items()):
        p2 = np.array([value for value, _ in values])
        counts, _ = np.histogram(p2, bins=P2_BINS, range=(0.0, 1.0))
        quartiles = np.quantile(p2, [0.25, 0.5, 0.75])
        entries.append({
            "model_version": version,
            "day": day.isoformat(),
            "studies": len(values),
            "urgent_share": sum(1 for _, urgent in values if urgent) / len(values),
            "p2_quartiles": [float(q) for q in quartiles],
            "p2_histogram": [int(count) for count in counts],
        })  # fmt: skip
    return entries


def _cards(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    """Every registered model version with its card as stored (JSON)."""
    with engine.begin() as connection:
        rows = connection.execute(sa.select(models.c.version, models.c.card)).all()
    return [(version, card or {}) for version, card in rows]


def reference_bands(engine: Engine) -> dict[str, tuple[float, float]]:
    """Per model version, the range of urgent-flag precision its card expects on new
    patients (`expected_unseen.urgent_precision`); versions whose card has none are left out."""
    bands = {}
    for version, card in _cards(engine):
        expected = (card.get("expected_unseen") or {}).get("urgent_precision") or {}
        if "low" in expected and "high" in expected:
            bands[version] = (float(expected["low"]), float(expected["high"]))
    return bands


def with_bands(
    agreement: list[dict[str, Any]], bands: dict[str, tuple[float, float]]
) -> list[dict[str, Any]]:
    """`agreement` rows with their version's band and whether the day's PPV is outside it."""
    marked = []
    for row in agreement:
        band = bands.get(row["model_version"])
        ppv = row["ppv"]
        outside = band is not None and ppv is not None and not band[0] <= ppv <= band[1]
        marked.append({**row, "band": band, "outside": outside})
    return marked


def days_outside(marked: list[dict[str, Any]]) -> dict[str, int]:
    """Per model version, how many of its latest days with a PPV were outside the band in a
    row (0 when the latest was inside); DRIFT_DAYS or more is drift."""
    streaks: dict[str, int] = {}
    for row in sorted(marked, key=lambda row: row["day"]):  # oldest first: the last day wins
        if row["band"] is None or row["ppv"] is None:
            continue
        version = row["model_version"]
        streaks[version] = streaks.get(version, 0) + 1 if row["outside"] else 0
    return streaks


def input_distribution(engine: Engine, days: int = 30) -> list[dict[str, Any]]:
    """One entry per (model version, day) over the last `days`: the scans classified with
    input statistics and, per statistic, the quartiles of its per-scan values."""
    since = utcnow() - timedelta(days=days)
    query = sa.select(
        results.c.model_version, results.c.classified_at, *(results.c[n] for n in INPUT_STATISTICS)
    ).where(
        results.c.classified_at >= since.astimezone(UTC),
        *(results.c[name].is_not(None) for name in INPUT_STATISTICS),
    )
    groups: dict[tuple[str, date], list[dict[str, Any]]] = defaultdict(list)
    for row in fetch_rows(engine, query):
        groups[(row["model_version"] or "-", row["classified_at"].date())].append(row)
    entries = []
    for (version, day), rows in sorted(groups.items()):
        entry: dict[str, Any] = {
            "model_version": version,
            "day": day.isoformat(),
            "scans": len(rows),
        }
        for name in INPUT_STATISTICS:
            quartiles = np.quantile([row[name] for row in rows], [0.25, 0.5, 0.75])
            entry[name] = {"quartiles": [float(q) for q in quartiles]}
        entries.append(entry)
    return entries


def input_bands(engine: Engine) -> dict[str, dict[str, tuple[float, float]]]:
    """Per model version and input statistic, the INPUT_BAND quantiles of the training scans'
    per-scan values its card states (`reference`); versions whose card has none are left out."""
    low, high = INPUT_BAND
    bands: dict[str, dict[str, tuple[float, float]]] = {}
    for version, card in _cards(engine):
        reference = card.get("reference") or {}
        for name in INPUT_STATISTICS:
            quantiles = (reference.get(name) or {}).get("quantiles") or {}
            if low in quantiles and high in quantiles:
                band = (float(quantiles[low]), float(quantiles[high]))
                bands.setdefault(version, {})[name] = band
    return bands


def with_input_bands(
    entries: list[dict[str, Any]], bands: dict[str, dict[str, tuple[float, float]]]
) -> list[dict[str, Any]]:
    """`input_distribution` entries with, per statistic, the version's band and whether the
    day's median is outside it; `judged` days (MIN_SCANS_JUDGED scans or more) only."""
    marked = []
    for entry in entries:
        judged = entry["scans"] >= MIN_SCANS_JUDGED
        checked: dict[str, Any] = {"judged": judged}
        for name in INPUT_STATISTICS:
            band = bands.get(entry["model_version"], {}).get(name)
            median = entry[name]["quartiles"][1]
            outside = judged and band is not None and not band[0] <= median <= band[1]
            checked[name] = {**entry[name], "band": band, "outside": outside}
        marked.append({**entry, **checked})
    return marked


def latest_judged(marked: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model version, its latest judged day with a band (`with_input_bands` entries): what
    the input drift alert and its gauges report."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in sorted(marked, key=lambda entry: entry["day"]):  # oldest first: the last wins
        if entry["judged"] and any(entry[name]["band"] for name in INPUT_STATISTICS):
            latest[entry["model_version"]] = entry
    return latest
