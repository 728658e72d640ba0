"""The benchmark's output: one rich table and bench/results.json (machine and versions included)."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

LIBRARIES = ("tensorflow-cpu", "keras", "numpy", "celery", "kombu", "redis", "sqlalchemy",
             "psycopg")  # fmt: skip
TARGETS = {
    "pipeline_over_ceiling": 0.6,
    "pipeline_over_naive": 5.0,
    "urgent_escalation_p95_ms": 250.0,
    "stat_time_to_result_p95_ms": 1000.0,
    "worker_peak_rss_mib": 1024.0,
}


def machine() -> dict[str, Any]:
    """CPU model and count, memory, OS and load while the benchmark ran."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        memory_kib = 0
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def library_versions(postgres_server: str | None) -> dict[str, str]:
    versions = {"postgresql_server": postgres_server or "not used"}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def targets_met(results: dict[str, Any]) -> dict[str, bool]:
    ratios = results["ratios"]
    return {
        "pipeline >= 0.6 x ceiling (SQLite)": ratios["pipeline_over_ceiling_sqlite"] >= 0.6,
        "pipeline >= 0.6 x ceiling (PostgreSQL)": ratios["pipeline_over_ceiling_postgresql"] >= 0.6,
        "pipeline >= 5 x naive": ratios["pipeline_over_naive"] >= 5.0,
        "urgent escalation p95 <= 250 ms": results["urgent_escalation_ms"]["p95"] <= 250.0,
        "stat time-to-result p95 <= 1 s": results["stat_time_to_result_ms"]["p95"] <= 1000.0,
        "worker peak RSS <= 1 GiB": results["worker_peak_rss_mib"] <= 1024.0,
    }


def table(results: dict[str, Any]) -> Table:
    """One table: every measurement, ratio and target."""
    out = Table(title=f"triage benchmark ({results['machine']['cpus']} CPUs)", show_lines=False)
    out.add_column("measurement")
    out.add_column("value", justify="right")
    out.add_column("note")
    pipeline, ratios = results["pipeline_scans_per_s"], results["ratios"]
    counts = results["counts"]
    out.add_row("ceiling (batched forward, 256)", f"{results['ceiling_scans_per_s']:,.0f}/s",
                "the model alone")  # fmt: skip
    out.add_row("pipeline, SQLite", f"{pipeline['sqlite']:,.0f}/s",
                f"{counts['pipeline']:,} scans, enqueue to last result")  # fmt: skip
    out.add_row("pipeline, PostgreSQL", f"{pipeline['postgresql']:,.0f}/s",
                f"{counts['pipeline']:,} scans, enqueue to last result")  # fmt: skip
    out.add_row("naive peer (task/scan, predict)", f"{results['naive_scans_per_s']:,.1f}/s",
                f"{counts['naive']:,} scans, SQLite")  # fmt: skip
    out.add_row("pipeline / ceiling, SQLite", f"{ratios['pipeline_over_ceiling_sqlite']:.2f}",
                "target >= 0.6")  # fmt: skip
    out.add_row("pipeline / ceiling, PostgreSQL",
                f"{ratios['pipeline_over_ceiling_postgresql']:.2f}", "target >= 0.6")  # fmt: skip
    out.add_row("pipeline / naive", f"{ratios['pipeline_over_naive']:.1f}", "target >= 5")
    for key, label, target in (
        ("urgent_escalation_ms", "urgent escalation", "target p95 <= 250 ms"),
        ("stat_time_to_result_ms", "stat time-to-result", "target p95 <= 1,000 ms"),
    ):
        p = results[key]
        out.add_row(f"{label} p50/p95/p99", f"{p['p50']:.0f}/{p['p95']:.0f}/{p['p99']:.0f} ms",
                    f"{target}; {counts['backlog']:,} backlog, SQLite")  # fmt: skip
    for backend, run in results["latency_by_database"].items():
        out.add_row(f"  on {backend}: escalation / stat p95",
                    f"{run['urgent_escalation_ms']['p95']:.0f} / "
                    f"{run['stat_time_to_result_ms']['p95']:.0f} ms",
                    f"{run['escalations']} escalations, {run['stat_scans']} stat scans")  # fmt: skip
    out.add_row("worker peak RSS", f"{results['worker_peak_rss_mib']:,.0f} MiB",
                "VmHWM of the pool child; target <= 1,024")  # fmt: skip
    out.add_row("  worker + pool child together", f"{results['worker_tree_peak_rss_mib']:,.0f} MiB",
                "sum of both VmHWM (an upper bound)")  # fmt: skip
    met = targets_met(results)
    out.add_row("targets met", f"{sum(met.values())}/{len(met)}",
                ", ".join(name for name, ok in met.items() if not ok) or "all")  # fmt: skip
    return out


def write(results: dict[str, Any], path: Path, console: Console) -> None:
    results["targets_met"] = targets_met(results)
    path.write_text(json.dumps(results, indent=2) + "\n")
    console.print(table(results))
    console.print(f"results written to {path}")
