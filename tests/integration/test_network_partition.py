"""Worker hosts over a network: one loses its link mid-backlog while it holds a job.

Hosts are Linux network namespaces on this machine joined by a bridge (testkit/netns.py; the
scenario is testkit/partition.py's, which the benchmark's network stage runs too): `svc` runs Redis and
PostgreSQL (bound to its own address, 10.231.7.10) and the urgent worker with the beat; `w1` and `w2` each run a `-Q stat,scans` solo worker; this test
process, in the root namespace, is the gateway host that enqueues. When w1 holds a job, its
bridge port goes down (a silent partition: packets dropped, no reset). The reconciler
(TRIAGE_STUCK_AFTER_SECONDS=5, every second from the beat) re-sends w1's claimed scans from the
ledger long before Redis's visibility timeout (3600 s) would; w2 finishes them. Then the link
comes back, w1's late write changes nothing, and every scan has exactly one result.
PostgreSQL runs with short TCP keepalives and `tcp_user_timeout`, so w1's open transaction (and
its row locks) is dropped in seconds; see RELIABILITY.md, "Worker hosts over a network".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Scan
from testkit.partition import (
    RECONCILE,
    Network,
    TopUp,
    cut_mid_job,
    holds_a_job,
    host_network,
    recover,
    start_services,
    start_workers,
    unavailable,
    wait_rejoined,
)
from testkit.services import create_database
from tests.integration.conftest import wait_for
from tests.integration.test_faults import check_exactly_once, counts, enqueue, settled

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SCANS, BATCH = 1500, 25


@pytest.fixture
def network() -> Iterator[Network]:
    """The bridge and its hosts, the workers started on them and a directory the `postgres`
    user can use; all removed afterwards, also on failure."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with host_network() as made:
        yield made


def top_up(engine: sa.Engine, ids: list[str], urgent_ids: set[str]) -> TopUp:
    """While the cut waits for w1 to hold a job: 100 more scans (added to `ids`, and the urgent
    ones to `urgent_ids`) whenever fewer than 100 are queued."""
    seeds = iter(range(100, 200))

    def send_more(count: int) -> None:
        more, more_urgent = enqueue(count, seed=next(seeds))
        ids.extend(more)
        urgent_ids.update(more_urgent)

    return TopUp(engine, 100, send_more)


def test_a_worker_host_partitioned_mid_backlog(
    network: Network, pipeline_factory, tmp_path: Path
) -> None:
    services = start_services(network, tmp_path / "redis")
    # this process (the gateway host) reaches the services over the bridge
    pipeline = pipeline_factory(
        create_database(services.admin_url), BATCH, services.redis_url, RECONCILE
    )
    workers = start_workers(network, services, pipeline.env, tmp_path / "logs")
    w1 = workers[1]

    ids, urgent_ids = enqueue(SCANS, seed=21)
    engine = engine_for(get_settings().resolved_database_url)
    wait_for(lambda: counts(engine)["done"] >= 300, "300 scans done before the partition")
    cut = cut_mid_job(network.hosts, services.w1, w1, engine, top_up(engine, ids, urgent_ids))
    assert cut.done_at_cut < len(ids), "the backlog drained before the cut: nothing tested"

    # the link stays down until every scan is done: the reconciler re-sent w1's work
    recovery = recover(engine, cut, lambda: settled(engine, len(ids), len(urgent_ids)))
    w1.check_alive()  # cut off, not dead
    assert holds_a_job(w1), "w1 finished its job while cut off: the recovery was not tested"

    network.hosts.heal(services.w1)
    healed = time.monotonic()
    check_exactly_once(engine, ids, urgent_ids)
    # back on the network, w1 finishes its stale job (a no-op: its scans are `done`)
    wait_rejoined(w1, healed)
    check_exactly_once(engine, ids, urgent_ids)
    if recovery.held:  # claimed by w1, then re-sent and claimed again
        with engine.connect() as connection:
            attempts = connection.scalars(
                sa.select(Scan.attempts).where(Scan.id.in_(recovery.held))
            )
            assert max(attempts.all()) >= 2
    for worker in workers:
        worker.check_alive()
