"""Prometheus metrics: `triage metrics` serves what `triage stats` shows, at /metrics.

A custom collector reads the broker and the ledger on each scrape (`take_snapshot`, the
results counted since the last scrape (`result_counts.py`), and retention's record on the
broker), so the numbers are as fresh as the scrape and nothing runs between
scrapes. A scrape that cannot reach the broker or the ledger still answers, with `triage_up 0`
and no other triage numbers, so Prometheus alerts on `triage_up == 0` instead of on a failed
target. What autoscalers read is in README.md ("Metrics and scaling out").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from wsgiref.simple_server import WSGIServer

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from gateway.broker.server import broker_url, redis_client
from gateway.operations.monitor import Snapshot, take_snapshot
from gateway.operations.result_counts import ResultCounts
from gateway.operations.retention_report import RetentionState, read_state
from ledger.database import engine_for
from schemas.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_PORT = 9108
UP_HELP = "1 if this scrape read both the broker and the ledger, else 0."
# what a scrape reports as `triage_up 0`, not as an error: an unreachable or unmigrated
# ledger (take_snapshot's RuntimeError, SQLAlchemy's errors), an unreachable broker
UNREACHABLE = (RuntimeError, ValueError, OSError, RedisError, sa.exc.SQLAlchemyError)


class TriageCollector(Collector):
    """Reads the system on every `collect()`; `describe()` reads nothing, so registering the
    collector does not scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.result_counts = ResultCounts()

    def describe(self) -> Iterator[Metric]:
        yield from self._families()
        yield from _retention_families()

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        try:
            snapshot = take_snapshot(self.settings)
            engine = engine_for(self.settings.resolved_database_url)
            counts = self.result_counts.read(engine, snapshot.taken_at)
            retention = read_state(redis_client(broker_url(self.settings)))
        except UNREACHABLE as error:
            log.warning("metrics scrape failed: %s: %s", type(error).__name__, error)
            yield GaugeMetricFamily("triage_up", UP_HELP, value=0)
            yield _duration(started)
            return
        yield GaugeMetricFamily("triage_up", UP_HELP, value=1)
        yield from self._families(snapshot, counts)
        yield from _retention_families(retention, snapshot.taken_at)
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
            "Outbox messages (PACS SR and key image, RIS, FHIR, webhook) not delivered yet per channel.",
            labels=["channel"],
        )
        contradicting = CounterMetricFamily(
            "triage_instances_contradicting",  # exposed as triage_instances_contradicting_total
            "Instances refused because their PatientID, issuer or accession contradicted the "
            "study they named (never merged).",
        )
        classified = CounterMetricFamily(
            "triage_results",  # exposed as triage_results_total
            "Scans classified per model version (results rows, counted once each by this "
            "exporter: never decreasing); "
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


def _retention_families(
    state: RetentionState | None = None, now: datetime | None = None
) -> Iterator[Metric]:
    """Retention's record on the broker (one read, whatever the ledger's size)."""
    held = GaugeMetricFamily(
        "triage_pixels_held",
        "Scans whose pixels the ledger still holds, as the last whole retention walk found.",
    )
    oldest = GaugeMetricFamily(
        "triage_pixels_oldest_age_seconds",
        "Age of the oldest pixels held (arrival), as the last whole retention walk found.",
    )
    purged = CounterMetricFamily(
        "triage_retention_purged",  # exposed as triage_retention_purged_total
        "Rows retention removed so far, per kind (pixels, key_images, scans, studies).",
        labels=["kind"],
    )
    if state is not None and now is not None:
        if state.pixels_held is not None:
            held.add_metric([], state.pixels_held)
        if state.oldest_pixels_at is not None:
            oldest.add_metric([], max(0.0, (now - state.oldest_pixels_at).total_seconds()))
        for kind, count in state.purged.items():
            purged.add_metric([kind], count)
    yield from (held, oldest, purged)


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
