"""Deliveries stage: decision -> delivered latency per channel, and recovery after an outage.

    python -m bench.deliveries --scans 40 --outage 30

Routine, urgent and deliveries workers on SQLite and a loopback Redis serve a phantom-trained
model; storescp (PACS), an MLLP listener (RIS) and an HTTP server (FHIR) receive. Phase 1: the
receivers are up; every study's messages are timed from the decision (the outbox row is
written with it) to `delivered_at`. Phase 2: the receivers are down for `--outage` seconds
while a second batch is decided; the time from their return to the last delivery is what the
capped backoff (60 s) and the reconciler bound.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console

from bench.environment import BenchEnvironment, open_environment
from bench.latency import percentiles
from bench.pipeline import POLL_S, prepare, read_engine
from gateway.intake.client import submit_images
from schemas.tables import Delivery, as_utc
from testkit import peers
from testkit.environment import worker_environment
from testkit.services import free_port, wait_until
from testkit.workers import start_worker
from worker.processes import stop_workers


def destinations(ports: dict[str, int]) -> dict[str, str]:
    return {
        "dicom_destination": f"PACS@127.0.0.1:{ports['pacs']}",
        "hl7_destination": f"127.0.0.1:{ports['ris']}",
        "fhir_url": f"http://127.0.0.1:{ports['fhir']}/fhir",
    }


def run_deliveries(env: BenchEnvironment, scans: int, outage_s: float, log_dir: Path) -> dict:
    """Both phases; returns latency percentiles per channel and the outage figures."""
    ports = {"pacs": free_port(), "ris": free_port(), "fhir": free_port()}
    settings = env.settings(
        env.fresh_database("sqlite"), reconcile_every_seconds=2, **destinations(ports)
    )
    prepare(settings)
    engine = read_engine(settings)
    worker_env = worker_environment(settings) | {
        f"TRIAGE_{key.upper()}": value for key, value in destinations(ports).items()
    }
    url = settings.redis_url
    workers = [
        start_worker("worker", queues, f"deliv-{queues}", worker_env, log_dir, url)
        for queues in ("stat,scans", "urgent", "deliveries")
    ]
    peers.reset()
    peers.Ris.refuse_first = False
    try:
        with peers.start_receivers(ports, log_dir / "pacs"):
            submit_images(list(env.scans[:scans]), settings=settings)
            wait_until(
                lambda: _pending(engine) == 0 and _count(engine) > 0,
                "deliveries",
                300,
                interval=POLL_S,
            )
        latency = _latency_ms(engine)
        before = _count(engine)
        submit_images(list(env.scans[scans : 2 * scans]), settings=settings)
        wait_until(
            lambda: _count(engine) > before and _tried(engine),
            "the outage's failures",
            300,
            interval=POLL_S,
        )
        time.sleep(outage_s)
        back = time.perf_counter()
        with peers.start_receivers(ports, log_dir / "pacs"):
            wait_until(
                lambda: _pending(engine) == 0, "deliveries after the outage", 600, interval=POLL_S
            )
            recovery = time.perf_counter() - back
        return {
            "latency_ms": latency,
            "outage_s": outage_s,
            "recovery_s": round(recovery, 1),
            "max_attempts_after_outage": _max_attempts(engine),
            "lost": _count(engine) - _delivered(engine),
        }
    finally:
        stop_workers(workers)
        engine.dispose()


def _count(engine: sa.Engine, *where: object) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(sa.select(sa.func.count()).select_from(Delivery).where(*where))
        )


def _pending(engine: sa.Engine) -> int:
    return _count(engine, Delivery.status.in_(("pending", "waiting")))  # waiting: a key image


def _delivered(engine: sa.Engine) -> int:
    return _count(engine, Delivery.status == "delivered")


def _tried(engine: sa.Engine) -> bool:
    return _count(engine, Delivery.status == "pending", Delivery.attempts == 0) == 0


def _max_attempts(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.max(Delivery.attempts))) or 0)


def _latency_ms(engine: sa.Engine) -> dict[str, dict[str, float]]:
    query = sa.select(Delivery.channel, Delivery.created_at, Delivery.delivered_at)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    by_channel: dict[str, list[float]] = {}
    for channel, created, delivered in rows:
        delay = (as_utc(delivered) - as_utc(created)).total_seconds() * 1000
        by_channel.setdefault(channel, []).append(delay)
    return {channel: percentiles(values) for channel, values in sorted(by_channel.items())}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=40)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--model-dir", type=Path, default=None)
    options = parser.parse_args(argv)
    console = Console()
    with ExitStack() as stack:
        env = open_environment(stack, 2 * options.scans, console, options.model_dir)
        results = run_deliveries(env, options.scans, options.outage, env.directory / "logs")
    console.print_json(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
