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
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from ledger import scans as ledger
from ledger.database import create_ledger_engine, upgrade_schema
from schemas.model_card import ModelCard
from worker.model import ServingModel
from worker.tasks import classify_scans

CARD_KEYS = 60  # about the size of a real card's JSON


def stub_model(seed: int) -> ServingModel:
    """A ServingModel whose forward pass draws random probabilities: no TensorFlow."""
    rng = np.random.default_rng(seed)
    card = ModelCard(
        version="bench-stub",
        created_at="2026-01-01T00:00:00Z",
        urgent_threshold=0.8,
        class_counts={f"field_{k}": f"value {k}" for k in range(CARD_KEYS)},
    )
    directory = Path("/nonexistent/bench-stub")
    return ServingModel(
        card.version, directory, card, lambda x: rng.dirichlet((1.0, 1.0, 1.0), size=len(x))
    )


def run_backend(url: str, jobs: int, batch: int) -> dict[str, float]:
    """Median µs per scan of enqueue and of one job's database work."""
    engine = create_ledger_engine(url)
    upgrade_schema(engine)
    rng = np.random.default_rng(0)
    model = stub_model(1)
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
        classify_scans(engine, ids, model, 3, lambda _: None, refuse_redelivered=True)
        done = time.perf_counter()
        enqueue_us.append((enqueued - started) * 1e6 / batch)
        job_us.append((done - enqueued) * 1e6 / batch)
    engine.dispose()
    return {"enqueue": statistics.median(enqueue_us[1:]), "job": statistics.median(job_us[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument(
        "--fsync", choices=("on", "off"), default="on", help="PostgreSQL fsync (production: on)"
    )
    options = parser.parse_args()
    from testkit.services import PostgresServer, create_database

    with tempfile.TemporaryDirectory(prefix="ledger-steps-") as tmp:
        admin_url, server = os.environ.get("TRIAGE_TEST_POSTGRES_URL"), None
        if not admin_url:
            Path(tmp).chmod(0o755)
            server = PostgresServer(Path(tmp) / "postgres").start(fsync=options.fsync)
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
