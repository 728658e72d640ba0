"""Figures for RELIABILITY.md: tests record them, this module turns them into tables.

Tests call `record(kind, name, **figures)`; with TRIAGE_TEST_FIGURES=path set, each call appends
one JSON line to that file (without it, nothing is written). Then

    python -m tests.reliability_figures path

prints the Markdown tables that RELIABILITY.md quotes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FIGURES_ENV = "TRIAGE_TEST_FIGURES"
FAULT_COLUMNS = ("scans", "faults", "lost", "duplicated", "redeliveries", "seconds")


def record(kind: str, name: str, **figures: object) -> None:
    """Append one line of figures (kind: `fault` or `bad_input`) if TRIAGE_TEST_FIGURES is set."""
    path = os.environ.get(FIGURES_ENV)
    if path:
        with Path(path).open("a") as out:
            out.write(json.dumps({"kind": kind, "name": name, **figures}) + "\n")


def tables(lines: list[dict]) -> str:
    """Markdown: one row per fault test, then the bad-input totals."""
    faults = [line for line in lines if line["kind"] == "fault"]
    bad = [line for line in lines if line["kind"] == "bad_input"]
    out = ["| fault test | " + " | ".join(FAULT_COLUMNS) + " | also |"]
    out.append("|---" * (len(FAULT_COLUMNS) + 2) + "|")
    for line in faults:
        also = ", ".join(
            f"{key} {value}"
            for key, value in line.items()
            if key not in (*FAULT_COLUMNS, "kind", "name")
        )
        cells = " | ".join(str(line[c]) for c in FAULT_COLUMNS)
        out.append(f"| {line['name']} | {cells} | {also} |")
    totals = {c: sum(line[c] for line in faults) for c in FAULT_COLUMNS[:-1]}
    out.append("| **total** | " + " | ".join(str(totals[c]) for c in FAULT_COLUMNS[:-1]) + " | | |")
    out += ["", "| bad-input catalogue | kinds tried | rejected correctly |", "|---|---|---|"]
    groups: dict[str, list[int]] = {}
    for line in bad:
        group = groups.setdefault(line["name"], [0, 0])
        group[0] += line["tried"]
        group[1] += line["rejected_correctly"]
    for name, (tried, correct) in groups.items():
        out.append(f"| {name} | {tried} | {correct} |")
    tried = sum(line["tried"] for line in bad)
    correct = sum(line["rejected_correctly"] for line in bad)
    out.append(f"| **total** | {tried} | {correct} |")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m tests.reliability_figures FIGURES.jsonl")
    text = Path(sys.argv[1]).read_text()
    print(tables([json.loads(line) for line in text.splitlines() if line.strip()]))
