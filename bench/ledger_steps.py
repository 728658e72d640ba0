"""Micro-benchmark: a classify job's database work per scan, without the model or Celery.

Runs `worker.tasks.classify_scans` (claim, record results, mark done) with a stub model on
jobs of `--batch` scans against SQLite and PostgreSQL, and times enqueue (`add_scans`) too.
Compare two trees back to back on one machine (numbers move with the machine's load):

    python -m bench.ledger_steps --jobs 16 --batch 256
    PYTHONPATH=/tmp/other-tree python -m bench.ledger_steps ...

PostgreSQL comes from TRIAGE_TEST_POSTGRES_URL, else a throwaway cluster is started.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from worker import ledger
from worker.database import create_ledger_engine, ensure_schema
from worker.tasks import classify_scans

CARD_KEYS = 60  # about the size of a real card's JSON


class StubModel:
    """Duck-types `ServingModel` for `classify_scans`: random probabilities, no TensorFlow."""

    version = "bench-stub"
    directory = Path("/nonexistent/bench-stub")
    urgent_threshold = 0.8

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.card = self

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return {f"field_{k}": f"value {k}" for k in range(CARD_KEYS)}

    def probabilities(self, scans: np.ndarray) -> np.ndarray:
        return self.rng.dirichlet((1.0, 1.0, 1.0), size=len(scans))

    def is_urgent(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities[:, 2] >= self.urgent_threshold


def run_backend(url: str, jobs: int, batch: int) -> dict[str, float]:
    """Median µs per scan of enqueue and of one job's database work."""
    engine = create_ledger_engine(url)
    ensure_schema(engine)
    rng = np.random.default_rng(0)
    model = StubModel(1)
    folded = "refuse_redelivered" in inspect.signature(classify_scans).parameters
    enqueue_us, job_us = [], []
    for _ in range(jobs + 1):  # the first job warms caches and is not counted
        new = [
            ledger.NewScan(
                str(uuid.uuid4()), rng.integers(0, 256, 4096, np.uint8).tobytes(), None, "b"
            )
            for _ in range(batch)
        ]
        ids = [scan.scan_id for scan in new]
        started = time.perf_counter()
        ledger.add_scans(engine, new, "routine")
        enqueued = time.perf_counter()
        if folded:
            classify_scans(engine, ids, model, 3, lambda _: None, refuse_redelivered=True)
        else:
            ledger.redelivered(engine, ids)
            classify_scans(engine, ids, model, 3, lambda _: None)
        done = time.perf_counter()
        enqueue_us.append((enqueued - started) * 1e6 / batch)
        job_us.append((done - enqueued) * 1e6 / batch)
    engine.dispose()
    return {"enqueue": statistics.median(enqueue_us[1:]), "job": statistics.median(job_us[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256)
    options = parser.parse_args()
    from tests.services import PostgresServer, create_database

    with tempfile.TemporaryDirectory(prefix="ledger-steps-") as tmp:
        admin_url, server = os.environ.get("TRIAGE_TEST_POSTGRES_URL"), None
        if not admin_url:
            Path(tmp).chmod(0o755)
            server = PostgresServer(Path(tmp) / "postgres").start()
            admin_url = server.url
        try:
            urls = {
                "sqlite": f"sqlite:///{tmp}/ledger.db",
                "postgresql": create_database(admin_url),
            }
            for backend, url in urls.items():
                timing = run_backend(url, options.jobs, options.batch)
                print(
                    f"{backend:10s} enqueue {timing['enqueue']:6.1f} µs/scan   "
                    f"job DB work {timing['job']:6.1f} µs/scan"
                )
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
