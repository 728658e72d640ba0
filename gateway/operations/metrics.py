"""Prometheus metrics: `triage metrics` serves what `triage stats` shows, at /metrics.

A custom collector reads the broker and the ledger on each scrape (`take_snapshot`, plus one
GROUP BY over the results), so the numbers are as fresh as the scrape and nothing runs between
scrapes. A scrape that cannot reach the broker or the ledger still answers, with `triage_up 0`
and no other triage numbers, so Prometheus alerts on `triage_up == 0` instead of on a failed
target. What autoscalers read is in README.md ("Metrics and scaling out").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from gateway.operations.monitor import Snapshot, take_snapshot
from ledger.database import engine_for
from ledger.statements import results
from schemas.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_PORT = 9108
UP_HELP = "1 if this scrape read both the broker and the ledger, else 0."
# what a scrape reports as `triage_up 0`, not as an error: an unreachable or unmigrated
# ledger (take_snapshot's RuntimeError, SQLAlchemy's errors), an unreachable broker
UNREACHABLE = (RuntimeError, ValueError, OSError, RedisError, sa.exc.SQLAlchemyError)


def results_by_model_version(engine: Engine) -> dict[str, int]:
    """Results rows per model version: one read-only GROUP BY (rows are never deleted, so each
    count only grows and Prometheus's `rate()` turns it into scans classified per second)."""
    query = sa.select(results.c.model_version, sa.func.count()).group_by(results.c.model_version)
    with engine.connect() as connection:
        return {version: count for version, count in connection.execute(query)}


class TriageCollector(Collector):
    """Reads the system on every `collect()`; `describe()` reads nothing, so registering the
    collector does not scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        try:
            snapshot = take_snapshot(self.settings)
            counts = results_by_model_version(engine_for(self.settings.resolved_database_url))
        except UNREACHABLE as error:
            log.warning("metrics scrape failed: %s: %s", type(error).__name__, error)
            yield GaugeMetricFamily("triage_up", UP_HELP, value=0)
            yield _duration(started)
            return
        yield GaugeMetricFamily("triage_up", UP_HELP, value=1)
        yield from self._families(snapshot, counts)
        yield _duration(started)

    def _families(
        self, snapshot: Snapshot | None = None, counts: dict[str, int] | None = None
    ) -> Iterator[Metric]:
        """The triage metric families, filled from `snapshot` and `counts` when given."""
        depth = GaugeMetricFamily(
            "triage_queue_broker_depth",
            "Jobs in the broker's Redis lists per queue (reserved, unacked jobs not counted).",
            labels=["queue"],
        )
        waiting = GaugeMetricFamily(
            "triage_queue_waiting",
            "Work waiting per queue according to the ledger: queued scans for stat and scans, "
            "urgent results not yet on the worklist for urgent.",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "triage_queue_oldest_wait_seconds",
            "Seconds the oldest waiting item of each queue has waited (0 when none waits).",
            labels=["queue"],
        )
        processing = GaugeMetricFamily(
            "triage_scans_processing", "Scans a worker has claimed and not yet finished."
        )
        failed = GaugeMetricFamily("triage_scans_failed", "Scans marked failed (poison scans).")
        urgent = GaugeMetricFamily(
            "triage_urgent_cases_open", "Urgent cases on the worklist not yet acknowledged."
        )
        deliveries = GaugeMetricFamily(
            "triage_deliveries_pending",
            "Outbox messages (PACS, RIS, FHIR, webhook) waiting to be delivered per channel.",
            labels=["channel"],
        )
        contradicting = CounterMetricFamily(
            "triage_instances_contradicting",  # exposed as triage_instances_contradicting_total
            "Instances refused because their PatientID, issuer or accession contradicted the "
            "study they named (never merged).",
        )
        classified = CounterMetricFamily(
            "triage_results",  # exposed as triage_results_total
            "Scans classified per model version (results rows in the ledger); "
            "rate() gives scans per second.",
            labels=["model_version"],
        )
        if snapshot is not None:
            for queue in snapshot.queues:
                depth.add_metric([queue.name], queue.broker_depth)
                waiting.add_metric([queue.name], queue.waiting)
                oldest.add_metric([queue.name], queue.oldest_waiting_seconds or 0.0)
            processing.add_metric([], snapshot.processing)
            failed.add_metric([], snapshot.failed)
            urgent.add_metric([], snapshot.open_urgent_cases)
            for channel, count in snapshot.deliveries_waiting.items():
                deliveries.add_metric([channel], count)
            contradicting.add_metric([], snapshot.contradicting)
        for version, count in sorted((counts or {}).items()):
            classified.add_metric([version], count)
        yield from (depth, waiting, oldest, processing, failed, urgent, deliveries)
        yield from (contradicting, classified)


def _duration(started: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "triage_scrape_duration_seconds",
        "Seconds this scrape spent reading the broker and the ledger.",
        value=time.monotonic() - started,
    )


def metrics_registry(settings: Settings) -> CollectorRegistry:
    """A registry holding only the triage collector (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(TriageCollector(settings))
    return registry


def start_metrics_server(
    settings: Settings, host: str = "0.0.0.0", port: int = DEFAULT_PORT
) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics on `host:port` from a daemon thread. Port 0 picks a free port
    (`server.server_port`); `server.shutdown()` then `server.server_close()` stop it."""
    return start_http_server(port, addr=host, registry=metrics_registry(settings))
