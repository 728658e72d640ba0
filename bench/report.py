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
FIXED_COST_TARGET_US = {"sqlite": 100.0, "postgresql": 150.0}
ESCALATION_P95_MS, STAT_P95_MS, RSS_MIB = 250.0, 1000.0, 1024.0
WEB_P95_MS = {"worklist_page_ms": 100.0, "api_worklist_ms": 100.0, "study_page_ms": 150.0}
WEB_TARGET = "< 100 / 100 / 150 ms"


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
    """The goals, on the production-settings column (the top-level keys)."""
    met = {}
    for model in ("default", "baseline"):
        for backend, target in FIXED_COST_TARGET_US.items():
            cost = results["fixed_cost_us_per_scan"][model][backend]
            met[f"fixed cost <= {target:.0f} us/scan ({model} model, {backend})"] = cost <= target
    met["pipeline >= 5 x naive"] = results["ratios"]["pipeline_over_naive"] >= 5.0
    met["urgent escalation p95 <= 250 ms"] = (
        _p95s(results, "urgent_escalation_ms") <= ESCALATION_P95_MS
    )
    met["stat time-to-result p95 <= 1 s"] = _p95s(results, "stat_time_to_result_ms") <= STAT_P95_MS
    met["routine worker peak RSS < 1 GiB"] = results["worker_peak_rss_mib"] < RSS_MIB
    network = results.get("network") or {}
    met["network partition: exactly one result each"] = (
        not network.get("skipped") and network.get("duplicates") == 0
    )
    if results.get("web"):
        met["web p95 " + WEB_TARGET] = _web_met(results["web"])
    return met


def _busy(run: dict[str, Any]) -> dict[str, Any]:
    """The web run's measurements with the streams open (and workers running)."""
    return next(value for key, value in run.items() if key.startswith("with_"))


def _web_met(web: dict[str, Any]) -> bool:
    if "error" in web:
        return False
    return all(
        _busy(run)[key]["p95"] < target and run["no_streams"][key]["p95"] < target
        for run in web.values()
        for key, target in WEB_P95_MS.items()
    )


def _web_cell(web: dict[str, Any] | None) -> str:
    """Worklist page / API worklist / study page p95 with the streams open, per database."""
    if not web:
        return "not run"
    if "error" in web:
        return web["error"]
    return "; ".join(
        f"{backend}: " + " / ".join(f"{_busy(run)[key]['p95']:.0f}" for key in WEB_P95_MS) + " ms"
        for backend, run in web.items()
    )


def _p95s(column: dict[str, Any], key: str) -> float:
    """The worst p95 of `key` over both databases."""
    return max(run[key]["p95"] for run in column["latency_by_database"].values())


def _column_rows(column: dict[str, Any], ceilings: tuple[float, float]) -> list[str]:
    """One column's cells, in the order of `ROW_LABELS`."""
    cells = []
    for model, key in (
        ("default", "pipeline_scans_per_s"),
        ("baseline", "pipeline_baseline_scans_per_s"),
    ):
        ceiling = ceilings[0] if model == "default" else ceilings[1]
        for backend in ("sqlite", "postgresql"):
            rate = column[key][backend]
            cost = column["fixed_cost_us_per_scan"][model][backend]
            cells.append(f"{rate:,.0f}/s ({rate / ceiling:.2f}x), {cost:,.0f} us")
    for key in ("urgent_escalation_ms", "stat_time_to_result_ms"):
        cells.append(" / ".join(
            f"{run[key]['p95']:.0f}" for run in column["latency_by_database"].values()
        ) + " ms")  # fmt: skip
    cells.append(f"{column['worker_peak_rss_mib']:,.0f} MiB")
    return cells


ROW_LABELS = (
    ("pipeline, default model, SQLite", "fixed cost <= 100 us"),
    ("pipeline, default model, PostgreSQL", "fixed cost <= 150 us"),
    ("pipeline, baseline_2conv, SQLite", "fixed cost <= 100 us"),
    ("pipeline, baseline_2conv, PostgreSQL", "fixed cost <= 150 us"),
    ("urgent escalation p95, SQLite / PostgreSQL", "<= 250 ms"),
    ("stat time-to-result p95, SQLite / PostgreSQL", "<= 1,000 ms"),
    ("routine worker peak RSS", "< 1,024 MiB"),
)


WEB_LABEL = "web p95, page / API worklist / study (50 streams, workers)"


def _recovery(results: dict[str, Any]) -> str:
    """The network stage's recovery time, or why there is none."""
    network = results.get("network") or {}
    if network.get("partition_recovery_s") is not None:
        return f"{network['partition_recovery_s']:.1f} s"
    return network.get("skipped") or network.get("error") or "not run"


def table(results: dict[str, Any]) -> Table:
    """Production and fast settings side by side, with the targets."""
    out = Table(title=f"triage benchmark ({results['machine']['cpus']} CPUs)", show_lines=False)
    for name in ("measurement", "production settings", "fast settings", "target"):
        out.add_column(name, justify="left" if name == "measurement" else "right")
    ceilings = (results["ceiling_scans_per_s"], results["ceiling_baseline_scans_per_s"])
    out.add_row("ceiling: default / baseline_2conv", f"{ceilings[0]:,.0f} / {ceilings[1]:,.0f}/s",
                "(same)", "")  # fmt: skip
    production = _column_rows(results, ceilings)
    fast = _column_rows(results["fast_settings"], ceilings)
    for (label, target), left, right in zip(ROW_LABELS, production, fast, strict=True):
        out.add_row(label, left, right, target)
    out.add_row("pipeline / naive (SQLite)", f"{results['ratios']['pipeline_over_naive']:.0f}x",
                "", ">= 5x")  # fmt: skip
    out.add_row("network: partition recovery", _recovery(results), "", "reported")
    out.add_row(WEB_LABEL, _web_cell(results.get("web")), "", WEB_TARGET)
    met = targets_met(results)
    out.add_row("targets met (production)", f"{sum(met.values())}/{len(met)}", "",
                "; ".join(name for name, ok in met.items() if not ok) or "all")  # fmt: skip
    return out


def write(results: dict[str, Any], path: Path, console: Console) -> None:
    results["targets_met"] = targets_met(results)
    path.write_text(json.dumps(results, indent=2) + "\n")
    console.print(table(results))
    console.print(f"results written to {path}")


def markdown(results: dict[str, Any]) -> str:
    """The side-by-side table for BENCHMARKS.md (`python -m bench.report bench/results.json`)."""
    ceilings = (results["ceiling_scans_per_s"], results["ceiling_baseline_scans_per_s"])
    lines = [
        "| measurement | production settings | fast settings | target |",
        "|---|---:|---:|---|",
        f"| forward ceiling, default / baseline_2conv | {ceilings[0]:,.0f} / {ceilings[1]:,.0f} "
        "scans/s | (same run) | |",
    ]
    production = _column_rows(results, ceilings)
    fast = _column_rows(results["fast_settings"], ceilings)
    for (label, target), left, right in zip(ROW_LABELS, production, fast, strict=True):
        lines.append(f"| {label} | {left} | {right} | {target} |")
    recovery = _recovery(results)
    lines += [
        f"| pipeline / naive peer (SQLite) | {results['ratios']['pipeline_over_naive']:.0f}x "
        "| | >= 5x |",
        f"| network: partition recovery | {recovery} | | reported |",
        f"| {WEB_LABEL} | {_web_cell(results.get('web'))} | | {WEB_TARGET} |",
    ]
    met = targets_met(results)
    lines.append(f"| targets met (production) | {sum(met.values())} of {len(met)} | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
