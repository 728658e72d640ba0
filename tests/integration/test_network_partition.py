"""Worker hosts over a network: one loses its link mid-backlog while it holds a job.

Hosts are Linux network namespaces on this machine joined by a bridge (tests/integration/
netns.py): `svc` runs Redis and PostgreSQL (bound to its own address, 10.231.7.10) and the
urgent worker with the beat; `w1` and `w2` each run a `-Q stat,scans` solo worker; this test
process, in the root namespace, is the gateway host that enqueues. When w1 holds a job, its
bridge port goes down (a silent partition: packets dropped, no reset). The reconciler
(TRIAGE_STUCK_AFTER_SECONDS=5, every second from the beat) re-sends w1's claimed scans from the
ledger long before Redis's visibility timeout (3600 s) would; w2 finishes them. Then the link
comes back, w1's late write changes nothing, and every scan has exactly one result.
PostgreSQL runs with short TCP keepalives and `tcp_user_timeout`, so w1's open transaction (and
its row locks) is dropped in seconds; see RELIABILITY.md, "Worker hosts over a network".
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.services import create_database, postgres_bin_dir, wait_until
from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Scan
from tests.integration.conftest import REPO_ROOT, wait_for
from tests.integration.netns import HostNetwork, namespaces_unavailable
from tests.integration.test_faults import check_exactly_once, counts, enqueue, settled
from tests.reliability_figures import record
from worker.processes import QUIET_FLAGS, WorkerProcess, stop_workers, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SCANS, BATCH = 1500, 25
RECONCILE = {"TRIAGE_STUCK_AFTER_SECONDS": "5", "TRIAGE_RECONCILE_EVERY_SECONDS": "1"}


@pytest.fixture
def network() -> Iterator[tuple[HostNetwork, list[WorkerProcess], Path]]:
    """The bridge and its hosts, the workers started on them and a directory the `postgres`
    user can use; all removed afterwards, also on failure."""
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(f"cannot create network namespaces: {reason}")
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL binaries not installed")
    hosts = HostNetwork()
    workers: list[WorkerProcess] = []
    parent = Path(tempfile.mkdtemp(prefix="triage-netns-"))  # pytest's tmp is private to root
    try:
        hosts.open()
        yield hosts, workers, parent
    finally:
        for host in hosts.hosts.values():  # let a partitioned worker shut down too
            with contextlib.suppress(subprocess.CalledProcessError):
                hosts.heal(host)
        stop_workers(workers, grace=5)
        hosts.close()
        shutil.rmtree(parent, ignore_errors=True)


def worker_on(host, name: str, queues: str, env: dict, log_dir: Path, *extra: str) -> WorkerProcess:  # noqa: ANN001
    command = host.command(
        sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", queues,
        "-n", f"{name}@%h", "--pool", "solo", "--loglevel", "INFO", *QUIET_FLAGS, *extra,
    )  # fmt: skip
    return WorkerProcess(name, command, env, log_dir, cwd=REPO_ROOT)


def seconds(value: float | None) -> str:
    return "n/a (its claim was not committed before the cut)" if value is None else f"{value:.1f} s"


def holds_a_job(worker: WorkerProcess) -> bool:
    """The worker's log shows a classify job received and not yet finished."""
    log = worker.log_path.read_text(errors="replace")
    received = set(re.findall(r"classify\[([0-9a-f-]+)\] received", log))
    finished = set(re.findall(r"classify\[([0-9a-f-]+)\] (?:succeeded|retry|raised)", log))
    return bool(received - finished)


def test_a_worker_host_partitioned_mid_backlog(
    network: tuple[HostNetwork, list[WorkerProcess], Path], pipeline_factory, tmp_path: Path
) -> None:
    hosts, workers, pg_parent = network
    began = time.monotonic()
    svc, w1_host, w2_host = hosts.add_host("svc"), hosts.add_host("w1"), hosts.add_host("w2")
    redis_url = hosts.start_redis(svc, tmp_path / "redis")
    admin_url = hosts.start_postgres(svc, pg_parent / "cluster")
    # this process (the gateway host) reaches the services over the bridge
    pipeline = pipeline_factory(create_database(admin_url), BATCH, redis_url, RECONCILE)
    logs = tmp_path / "logs"
    schedule = str(tmp_path / "beat-schedule")
    urgent = worker_on(svc, "urgent", "urgent", pipeline.env, logs, "-B", "-s", schedule)
    w1 = worker_on(w1_host, "w1", "stat,scans", pipeline.env, logs)
    w2 = worker_on(w2_host, "w2", "stat,scans", pipeline.env, logs)
    workers += [urgent, w1, w2]
    wait_ready(workers, pipeline.redis_url, timeout=120)

    ids, urgent_ids = enqueue(SCANS, seed=21)
    engine = engine_for(get_settings().resolved_database_url)

    def processing() -> set[str]:
        with engine.connect() as connection:
            return set(connection.scalars(sa.select(Scan.id).where(Scan.status == "processing")))

    wait_for(lambda: counts(engine)["done"] >= 300, "300 scans done before the partition")
    # a job takes w1 0.1-0.2 s: when its log shows one in flight, freeze w1 (SIGSTOP) for the
    # milliseconds it takes to look again and cut its link, so the cut lands mid-job; the cut
    # counts if the job is still unfinished 2 s later (it was not past its last network call)
    for tries in range(1, 11):  # noqa: B007 - reported
        wait_until(lambda: holds_a_job(w1), what="w1 holding a job", timeout=60, interval=0.005)
        os.kill(w1.pid, signal.SIGSTOP)
        try:
            cut = holds_a_job(w1)  # received and not finished, so not acknowledged either
            if cut:
                hosts.partition(w1_host)
                down, down_at = time.monotonic(), datetime.now(UTC)
        finally:
            os.kill(w1.pid, signal.SIGCONT)
        if cut:
            at_partition = counts(engine)
            time.sleep(2.0)  # w2 finishes its own job well within this
            if holds_a_job(w1):
                break
            hosts.heal(w1_host)
    else:
        pytest.fail("could not cut w1's link while it held a job")
    assert at_partition["done"] < SCANS, "the backlog drained before the cut: nothing tested"
    # w1's scans are `processing` if its claim reached PostgreSQL before the cut (else still
    # `queued`); either way its message waits unacknowledged in Redis, for 3600 s
    held = processing()

    # the link stays down until every scan is done: the reconciler re-sent w1's work
    resent_s = held_done_s = None
    while held and held_done_s is None:
        assert time.monotonic() - down < 150, f"not recovered: {counts(engine)}"
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(Scan.status, Scan.published_at).where(Scan.id.in_(held))
            ).all()
        if resent_s is None and any(sent and sent > down_at for _, sent in rows):
            resent_s = time.monotonic() - down
        if all(status == "done" for status, _ in rows):
            held_done_s = time.monotonic() - down
        time.sleep(0.1)
    wait_until(lambda: settled(engine, SCANS, len(urgent_ids)), "the backlog", 150, interval=0.1)
    recovered_s = time.monotonic() - down
    w1.check_alive()  # cut off, not dead
    assert holds_a_job(w1), "w1 finished its job while cut off: the recovery was not tested"

    hosts.heal(w1_host)
    healed = time.monotonic()
    figures = check_exactly_once(engine, ids, urgent_ids)
    # back on the network, w1 finishes its stale job (a no-op: its scans are `done`)
    wait_until(lambda: not holds_a_job(w1), "w1 to finish its stale job", 60, interval=0.5)
    rejoined_s = time.monotonic() - healed
    figures = check_exactly_once(engine, ids, urgent_ids)
    if held:  # claimed by w1, then re-sent and claimed again
        with engine.connect() as connection:
            attempts = connection.scalars(sa.select(Scan.attempts).where(Scan.id.in_(held)))
            assert max(attempts.all()) >= 2
    for worker in workers:
        worker.check_alive()

    print(
        f"\npartition_recovery_s={recovered_s:.1f} (link down -> every scan done); "
        f"w1's claimed scans re-sent after {seconds(resent_s)}, done after {seconds(held_done_s)}; "
        f"w1 rejoined {rejoined_s:.1f} s after the link came back; "
        f"{at_partition['done']} of {SCANS} done at the partition, {len(held)} held by w1 "
        f"(link cut {tries} time(s) to catch w1 mid-job)"
    )
    record(
        "fault",
        "worker host partitioned mid-backlog (network namespaces)",
        scans=SCANS,
        faults=1,
        seconds=round(time.monotonic() - began),
        partition_recovery_s=round(recovered_s, 1),
        held_resent_s=resent_s and round(resent_s, 1),
        held_done_s=held_done_s and round(held_done_s, 1),
        held_at_partition=len(held),
        cuts=tries,
        **figures,
    )
