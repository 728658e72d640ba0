"""The web stage while workers run: a routine and an urgent worker classify phantoms fed into
the same ledger (in chunks, as a hospital sends them) while the pages are measured."""

from __future__ import annotations

import argparse
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.environment import BenchEnvironment, open_environment
from bench.pipeline import count, enqueue, read_engine
from bench.web_load import run_web
from schemas.settings import Settings
from schemas.tables import Result
from testkit.environment import worker_environment
from testkit.workers import start_worker
from worker.processes import stop_workers

FEED_SCANS = 2_000  # phantoms made for the feed (reused round and round)
FEED_CHUNK = 50
FEED_EVERY_S = 0.5


class Feeding:
    """Workers started and fed while the block runs; what they did, in the dict it yields."""

    def __init__(self, env: BenchEnvironment, settings: Settings, logs: Path) -> None:
        self.env, self.settings, self.logs = env, settings, logs
        self.done = threading.Event()
        self.report: dict[str, Any] = {}

    def _feed(self) -> None:
        offset = 0
        while not self.done.wait(FEED_EVERY_S):
            chunk = self.env.scans[offset : offset + FEED_CHUNK]
            offset = (offset + FEED_CHUNK) % (len(self.env.scans) - FEED_CHUNK)
            self.report["scans_fed"] += len(enqueue(chunk, self.settings))

    def __enter__(self) -> dict[str, Any]:
        env = worker_environment(self.settings)
        broker = self.settings.redis_url
        self.workers = [
            start_worker("worker", "stat,scans", "web-routine", env, self.logs, broker),
            start_worker("worker", "urgent", "web-urgent", env, self.logs, broker),
        ]
        self.engine = read_engine(self.settings)
        self.results_before = count(self.engine, Result.__table__)
        self.report.update(routine_workers=1, urgent_workers=1, scans_fed=0)
        self.started = time.perf_counter()
        self.feeder = threading.Thread(target=self._feed, name="web-feed", daemon=True)
        self.feeder.start()
        return self.report

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.feeder.join(timeout=30)
        seconds = time.perf_counter() - self.started
        classified = count(self.engine, Result.__table__) - self.results_before
        self.report.update(
            scans_classified=classified,
            scans_per_s=round(classified / seconds, 1),
            seconds=round(seconds, 1),
        )
        stop_workers(self.workers)
        self.engine.dispose()


def run_with_workers(options: argparse.Namespace, env: BenchEnvironment) -> dict:
    """The web stage on a fresh ledger of the bench environment, with workers classifying
    meanwhile."""
    backend = "postgresql" if options.postgres else "sqlite"
    url = options.database_url or env.fresh_database(backend)
    settings = env.settings(url)
    logs = env.directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return run_web(url, env.directory, options, Feeding(env, settings, logs))


def open_and_run(stack: ExitStack, options: argparse.Namespace) -> dict:
    """`python -m bench.web --with-workers`: a bench environment of its own (Redis,
    PostgreSQL, a published model, phantoms), then the stage."""
    return run_with_workers(
        options, open_environment(stack, FEED_SCANS, Console(stderr=True), options.model_dir)
    )
