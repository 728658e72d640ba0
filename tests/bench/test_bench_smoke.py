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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
REPO_ROOT = Path(__file__).resolve().parents[2]
PERCENTILES = ("p50", "p95", "p99")


def positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_bench_quick_run_writes_every_key_with_sane_values(tmp_path: Path) -> None:
    model_root = tmp_path / "models"
    publish_brightness_model(model_root, version="bench-smoke", threshold=0.001)
    out = tmp_path / "results.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    if os.environ.get("TRIAGE_TEST_POSTGRES_URL"):
        env["TRIAGE_TEST_POSTGRES_URL"] = os.environ["TRIAGE_TEST_POSTGRES_URL"]
    command = [sys.executable, "-m", "bench", "--quick", "--scans", "120", "--naive-scans", "6"]
    command += ["--ceiling-scans", "512", "--model-dir", str(model_root), "--out", str(out)]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=580
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "pipeline / ceiling" in done.stdout  # the table was printed

    results = json.loads(out.read_text())
    for key in (
        "ceiling_scans_per_s",
        "ceiling_baseline_scans_per_s",
        "naive_scans_per_s",
        "worker_peak_rss_mib",
    ):
        assert positive(results[key]), (key, results[key])
    assert set(results["pipeline_scans_per_s"]) == {"sqlite", "postgresql"}
    assert all(positive(rate) for rate in results["pipeline_scans_per_s"].values())
    ratios = results["ratios"]
    assert set(ratios) == {
        "pipeline_over_ceiling_sqlite",
        "pipeline_over_ceiling_postgresql",
        "pipeline_over_naive",
        "ceiling_over_baseline",
    }
    assert all(positive(ratio) for ratio in ratios.values())
    rates = results["pipeline_scans_per_s"]
    assert math.isclose(
        ratios["pipeline_over_ceiling_sqlite"], rates["sqlite"] / results["ceiling_scans_per_s"]
    )
    for key in ("urgent_escalation_ms", "stat_time_to_result_ms"):
        values = [results[key][name] for name in PERCENTILES]
        assert all(positive(value) for value in values), (key, results[key])
        assert values == sorted(values), (key, results[key])
    for backend in ("sqlite", "postgresql"):
        run = results["latency_by_database"][backend]
        assert run["escalations"] > 0 and run["stat_scans"] > 0, (backend, run)
    assert results["worker_peak_rss_mib"] < 64 * 1024  # MiB, not bytes or KiB
    assert results["machine"]["cpus"] >= 1 and results["versions"]["celery"]
