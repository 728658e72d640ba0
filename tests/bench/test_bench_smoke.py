"""`python -m bench` at toy sizes, so the benchmark cannot rot: every key, sane values.

Timings are not asserted (they belong to BENCHMARKS.md); only that each stage ran and
reported a positive, finite number. The brightness model with a threshold low enough that
part of the phantoms come out urgent stands in for a trained one (no training in tests).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_model import publish_brightness_model

# the phantoms are dark lung-window slices (mean grey 8-35): P(class 2) of the brightness
# model is 0.0001-0.0004 on them, so about a third come out urgent at this threshold
SMOKE_THRESHOLD = 0.00025

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
REPO_ROOT = Path(__file__).resolve().parents[2]
PERCENTILES = ("p50", "p95", "p99")


def positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def check_column(column: dict, extra_ratios: tuple[str, ...]) -> None:
    """One settings column: both served models on both databases, ratios that match."""
    ceilings = {"default": column.get("ceiling_scans_per_s"), "baseline": None}
    for key in ("pipeline_scans_per_s", "pipeline_baseline_scans_per_s"):
        assert set(column[key]) == {"sqlite", "postgresql"}, key
        assert all(positive(rate) for rate in column[key].values()), column[key]
    ratios = column["ratios"]
    assert set(ratios) == {
        f"pipeline_over_ceiling{infix}_{backend}"
        for infix in ("", "_baseline")
        for backend in ("sqlite", "postgresql")
    } | set(extra_ratios)
    assert all(positive(ratio) for ratio in ratios.values())
    if ceilings["default"] is not None:
        assert math.isclose(
            ratios["pipeline_over_ceiling_sqlite"],
            column["pipeline_scans_per_s"]["sqlite"] / ceilings["default"],
        )
    for model in ("default", "baseline"):
        assert set(column["fixed_cost_us_per_scan"][model]) == {"sqlite", "postgresql"}
    for backend in ("sqlite", "postgresql"):
        run = column["latency_by_database"][backend]
        assert run["escalations"] > 0 and run["stat_scans"] > 0, (backend, run)


def test_bench_quick_run_writes_every_key_with_sane_values(tmp_path: Path) -> None:
    model_root, baseline_root = tmp_path / "models", tmp_path / "baseline"
    publish_brightness_model(model_root, version="bench-smoke", threshold=SMOKE_THRESHOLD)
    publish_brightness_model(
        baseline_root, version="bench-smoke-baseline", threshold=SMOKE_THRESHOLD
    )
    out = tmp_path / "results.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    if os.environ.get("TRIAGE_TEST_POSTGRES_URL"):
        env["TRIAGE_TEST_POSTGRES_URL"] = os.environ["TRIAGE_TEST_POSTGRES_URL"]
    command = [sys.executable, "-m", "bench", "--quick", "--scans", "120", "--naive-scans", "6"]
    command += ["--ceiling-scans", "512", "--network-scans", "300", "--out", str(out)]
    command += ["--model-dir", str(model_root), "--baseline-model-dir", str(baseline_root)]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=580
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "production settings" in done.stdout and "fast settings" in done.stdout  # the table

    results = json.loads(out.read_text())
    for key in (
        "ceiling_scans_per_s",
        "ceiling_baseline_scans_per_s",
        "naive_scans_per_s",
        "worker_peak_rss_mib",
    ):
        assert positive(results[key]), (key, results[key])
    check_column(results, ("pipeline_over_naive", "ceiling_over_baseline"))
    check_column(results["fast_settings"], ())
    assert results["servers"]["postgresql"] == {"fsync": "on", "synchronous_commit": "on"}
    assert results["servers"]["redis"] == {"appendonly": "yes", "appendfsync": "everysec"}
    assert results["fast_settings"]["servers"]["postgresql"]["fsync"] == "off"
    assert results["fast_settings"]["servers"]["redis"]["appendonly"] == "no"
    network = results["network"]
    assert network.get("skipped") is None, network  # namespaces can be made here and in CI
    assert network["duplicates"] == 0 and network["lost"] == 0
    assert network["results"] == network["scans"] == 300 + network["topped_up"]
    assert positive(network["partition_recovery_s"])
    capacity = results["capacity"]
    assert [row["hosts"] for row in capacity["projection"]] == [1, 4, 16, 64]
    assert all(positive(row["scans_per_s"]) for row in capacity["projection"])
    for key in ("urgent_escalation_ms", "stat_time_to_result_ms"):
        values = [results[key][name] for name in PERCENTILES]
        assert all(positive(value) for value in values), (key, results[key])
        assert values == sorted(values), (key, results[key])
    for backend in ("sqlite", "postgresql"):
        run = results["latency_by_database"][backend]
        assert run["escalations"] > 0 and run["stat_scans"] > 0, (backend, run)
    assert results["worker_peak_rss_mib"] < 64 * 1024  # MiB, not bytes or KiB
    assert results["machine"]["cpus"] >= 1 and results["versions"]["celery"]
    check_web(results["web"])


def check_web(web: dict) -> None:
    """The web stage on both databases: every measurement timed, every stream told."""
    assert set(web) == {"sqlite", "postgresql"}, web
    for backend, run in web.items():
        busy = run["with_50_streams_and_workers"]
        for phase in (run["no_streams"], busy):
            for key in ("worklist_page_ms", "api_worklist_ms", "study_page_ms"):
                values = [phase[key][name] for name in PERCENTILES]
                assert all(positive(value) for value in values), (backend, key, phase[key])
        assert busy["streams_open"] == busy["streams_told_of_the_ack"] == 50, (backend, busy)
        assert run["workers"]["scans_classified"] > 0, (backend, run["workers"])


def test_bench_web_only_updates_the_web_key_and_keeps_the_others(tmp_path: Path) -> None:
    model_root = tmp_path / "models"
    publish_brightness_model(model_root, version="bench-web", threshold=0.001)
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"receive": {"kept": True}}))
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    command = [sys.executable, "-m", "bench", "--web-only", "--quick", "--out", str(out)]
    command += ["--model-dir", str(model_root)]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=580
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["receive"] == {"kept": True}
    check_web(results["web"])
