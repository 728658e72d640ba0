"""What `triage demo` prints at the end: this batch's urgent worklist and a summary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from ledger.database import engine_for
from ledger.reads import list_results, worklist
from schemas.model_card import CLASS_NAMES, URGENT_CLASS
from schemas.settings import Settings

WORKLIST_ROWS = 15


@dataclass(frozen=True)
class DemoResult:
    """What one run did, for the summary and for tests."""

    scan_ids: list[str]
    labels: np.ndarray
    model_version: str
    urgent_threshold: float
    seconds_to_classify: float

    @property
    def throughput(self) -> float:
        return len(self.scan_ids) / max(self.seconds_to_classify, 1e-9)


def show_results(settings: Settings, result: DemoResult, console: Console) -> None:
    """The urgent worklist of this batch, then counts per class and throughput."""
    engine = engine_for(settings.resolved_database_url)
    batch = set(result.scan_ids)
    cases = [case for case in worklist(engine) if case["scan_id"] in batch]
    table = Table(title=f"Urgent worklist by exam ({len(cases)} open exams from this batch)")
    for column in ("#", "exam", "slices", "most suspicious slice", "P(class 2)", "listed after"):
        left = column in ("exam", "most suspicious slice")
        table.add_column(column, justify="left" if left else "right")
    for rank, case in enumerate(cases[:WORKLIST_ROWS], 1):
        listed_after = (case["escalated_at"] - case["received_at"]).total_seconds()
        table.add_row(
            str(rank),
            case["study_uid"].removeprefix("triage:"),
            str(case["slices"]),
            case["scan_id"],
            f"{case['p2']:.3f}",
            f"{listed_after:.1f} s",
        )
    console.print(table)
    if len(cases) > WORKLIST_ROWS:
        console.print(f"... and {len(cases) - WORKLIST_ROWS} more: `triage urgent` lists them all")

    rows = [row for row in list_results(engine) if row["scan_id"] in batch]
    predicted = np.bincount([row["predicted"] for row in rows], minlength=len(CLASS_NAMES))
    truth = np.bincount(result.labels, minlength=len(CLASS_NAMES))
    flagged = {row["scan_id"] for row in rows if row["urgent"]}
    truly_urgent = {
        scan_id
        for scan_id, label in zip(result.scan_ids, result.labels, strict=True)
        if label == URGENT_CLASS
    }
    summary = Table(title=f"Summary (model {result.model_version}, synthetic phantoms)")
    summary.add_column("class")
    summary.add_column("phantoms", justify="right")
    summary.add_column("predicted", justify="right")
    for index, name in enumerate(CLASS_NAMES):
        summary.add_row(f"{index} {name}", str(truth[index]), str(predicted[index]))
    console.print(summary)
    caught = len(flagged & truly_urgent)
    console.print(
        f"{len(rows)} of {len(result.scan_ids)} scans classified in "
        f"{result.seconds_to_classify:.1f} s ({result.throughput:.1f} scans/s); "
        f"{len(flagged)} slices flagged urgent, {caught} of {len(truly_urgent)} urgent phantoms "
        f"caught; "
        f"{len(cases)} exams on the worklist."
    )
    console.print(
        f"urgent flag: P(class 2) >= {result.urgent_threshold:.3f}, the threshold the trainer "
        "chose on validation to reach the target class-2 recall (missing an urgent case costs "
        "more than a false alarm)."
    )
    console.print(
        "next: `triage urgent`, `triage studies`, `triage results`, `triage stats`; the README "
        "shows the same flow on your own data."
    )
