"""The partition scenario: a worker host loses its link mid-backlog while it holds a job.

Shared by the benchmark's network stage (bench/network.py) and its integration test
(tests/integration/test_network_partition.py); each sends its own scans and checks its own
figures. Hosts are Linux network namespaces joined by a bridge (testkit/netns.py): `svc` runs
Redis and PostgreSQL (bound to its own address) and the urgent worker with the beat; `w1` and
`w2` each run a `-Q stat,scans` solo worker; the calling process, in the root namespace, is the
gateway host that enqueues. When w1 holds a job its bridge port goes down (a silent partition:
packets dropped, no reset). The reconciler (stuck after 5 s, run every second by the beat)
re-sends w1's claimed scans from the ledger long before Redis's visibility timeout would; w2
finishes them. Until the cut, the caller's `TopUp` keeps the queue from running dry, so a fast
model cannot drain the backlog before w1 is caught holding a job.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from schemas.queues import CELERY_CONFIG
from schemas.tables import Scan
from testkit.netns import Host, HostNetwork, namespaces_unavailable
from testkit.services import postgres_bin_dir, wait_until
from testkit.workers import frozen
from worker.processes import QUIET_FLAGS, WorkerProcess, stop_workers, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
STUCK_AFTER_S, RECONCILE_EVERY_S = 5, 1
RECONCILE = {
    "TRIAGE_STUCK_AFTER_SECONDS": str(STUCK_AFTER_S),
    "TRIAGE_RECONCILE_EVERY_SECONDS": str(RECONCILE_EVERY_S),
}
VISIBILITY_TIMEOUT_S = CELERY_CONFIG["broker_transport_options"]["visibility_timeout"]
RECOVERY_TIMEOUT_S = 150.0
READY_TIMEOUT_S = 120.0
CUT_ATTEMPTS = 10


@dataclass
class Network:
    """The bridge and its hosts, the workers started on them and a directory the `postgres`
    user can reach (pytest's and mkdtemp's are private to root otherwise)."""

    hosts: HostNetwork
    directory: Path
    workers: list[WorkerProcess] = field(default_factory=list)


@dataclass
class Services:
    """The three hosts and the URLs of the services on `svc`."""

    svc: Host
    w1: Host
    w2: Host
    redis_url: str
    admin_url: str


@dataclass
class Cut:
    """w1's link cut while it held a job: when, and how far the backlog was."""

    tries: int
    down: float  # time.monotonic() at the cut
    down_at: datetime
    done_at_cut: int


@dataclass
class Recovery:
    """What the reconciler did while w1 was cut off (seconds from the cut)."""

    held: set[str]  # scans w1 had claimed (`processing`) at the cut
    resent_s: float | None  # first of them re-published; None if none was held
    held_done_s: float | None  # all of them done
    recovered_s: float  # the whole backlog settled: partition_recovery_s


def unavailable() -> str | None:
    """Why the scenario cannot run here (None when it can)."""
    reason = namespaces_unavailable()
    if reason:
        return f"cannot create network namespaces: {reason}"
    if postgres_bin_dir() is None:
        return "PostgreSQL binaries not installed"
    return None


@contextlib.contextmanager
def host_network() -> Iterator[Network]:
    """An open HostNetwork; afterwards every host healed, workers stopped, all removed."""
    network = Network(HostNetwork(), Path(tempfile.mkdtemp(prefix="triage-netns-")))
    try:
        network.hosts.open()
        yield network
    finally:
        for host in network.hosts.hosts.values():  # let a partitioned worker shut down too
            with contextlib.suppress(subprocess.CalledProcessError):
                network.hosts.heal(host)
        stop_workers(network.workers, grace=5)
        network.hosts.close()
        shutil.rmtree(network.directory, ignore_errors=True)


def start_services(network: Network, redis_dir: Path) -> Services:
    """Hosts svc, w1 and w2; Redis and a PostgreSQL cluster on svc."""
    hosts = network.hosts
    svc, w1, w2 = hosts.add_host("svc"), hosts.add_host("w1"), hosts.add_host("w2")
    redis_url = hosts.start_redis(svc, redis_dir)
    admin_url = hosts.start_postgres(svc, network.directory / "cluster")
    return Services(svc, w1, w2, redis_url, admin_url)


def worker_on(
    host: Host, name: str, queues: str, env: dict[str, str], log_dir: Path, *extra: str
) -> WorkerProcess:
    """A solo `celery -A worker worker -Q queues` inside `host`'s namespace."""
    command = host.command(
        sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", queues,
        "-n", f"{name}@%h", "--pool", "solo", "--loglevel", "INFO", *QUIET_FLAGS, *extra,
    )  # fmt: skip
    return WorkerProcess(name, command, env, log_dir, cwd=REPO_ROOT)


def start_workers(
    network: Network, services: Services, env: dict[str, str], log_dir: Path
) -> tuple[WorkerProcess, WorkerProcess, WorkerProcess]:
    """The urgent worker with the beat on svc, a routine worker on w1 and on w2; all ready."""
    schedule = str(log_dir / "beat-schedule")
    urgent = worker_on(services.svc, "urgent", "urgent", env, log_dir, "-B", "-s", schedule)
    w1 = worker_on(services.w1, "w1", "stat,scans", env, log_dir)
    w2 = worker_on(services.w2, "w2", "stat,scans", env, log_dir)
    network.workers += [urgent, w1, w2]
    wait_ready(network.workers, env["TRIAGE_REDIS_URL"], timeout=READY_TIMEOUT_S)
    return urgent, w1, w2


def holds_a_job(worker: WorkerProcess) -> bool:
    """The worker's log shows a classify job received and not yet finished."""
    log = worker.log_path.read_text(errors="replace")
    received = set(re.findall(r"classify\[([0-9a-f-]+)\] received", log))
    finished = set(re.findall(r"classify\[([0-9a-f-]+)\] (?:succeeded|retry|raised)", log))
    return bool(received - finished)


def done_count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).where(Scan.status == "done")))


def processing(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.scalars(sa.select(Scan.id).where(Scan.status == "processing")))


def _try_cut(hosts: HostNetwork, host: Host, worker: WorkerProcess) -> bool:
    """Freeze the worker (SIGSTOP) for the milliseconds it takes to look at its log again and
    cut its link if a job is still in flight (received, so not acknowledged either)."""
    with frozen(worker):
        cut = holds_a_job(worker)
        if cut:
            hosts.partition(host)
        return cut


def cut_mid_job(
    hosts: HostNetwork,
    host: Host,
    worker: WorkerProcess,
    engine: sa.Engine,
    top_up: Callable[[], None] | None = None,
) -> Cut:
    """Partition `host` while its worker holds a job. A job takes 0.1-0.2 s: the cut counts if
    the job is still unfinished 2 s later (it was not past its last network call), else the
    link is healed and the next job tried. `top_up`, called while waiting, keeps jobs coming
    (a fast model on a fast machine can drain a small backlog between two tries)."""

    def in_flight() -> bool:
        if top_up is not None:
            top_up()
        return holds_a_job(worker)

    for tries in range(1, CUT_ATTEMPTS + 1):
        wait_until(in_flight, "w1 holding a job", timeout=60, interval=0.005)
        if not _try_cut(hosts, host, worker):
            continue
        cut = Cut(tries, time.monotonic(), datetime.now(UTC), done_count(engine))
        time.sleep(2.0)  # the other worker finishes its own job well within this
        if holds_a_job(worker):
            return cut
        hosts.heal(host)
    raise RuntimeError(f"could not cut {worker.name}'s link while it held a job")


def watch_held(engine: sa.Engine, held: set[str], cut: Cut) -> tuple[float | None, float | None]:
    """Seconds from the cut until the first held scan is re-published and until all are done."""
    resent_s = held_done_s = None
    while held and held_done_s is None:
        if time.monotonic() - cut.down > RECOVERY_TIMEOUT_S:
            raise TimeoutError(f"w1's {len(held)} claimed scans not done after the cut")
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(Scan.status, Scan.published_at).where(Scan.id.in_(held))
            ).all()
        if resent_s is None and any(sent and sent > cut.down_at for _, sent in rows):
            resent_s = time.monotonic() - cut.down
        if all(status == "done" for status, _ in rows):
            held_done_s = time.monotonic() - cut.down
        time.sleep(0.1)
    return resent_s, held_done_s


def recover(engine: sa.Engine, cut: Cut, settled: Callable[[], bool]) -> Recovery:
    """With the link still down: watch w1's claimed scans, then wait for the whole backlog.
    w1's scans are `processing` if its claim reached PostgreSQL before the cut (else still
    `queued`); either way its message waits unacknowledged in Redis for the visibility timeout."""
    held = processing(engine)
    resent_s, held_done_s = watch_held(engine, held, cut)
    wait_until(settled, "the backlog", RECOVERY_TIMEOUT_S, interval=0.1)
    return Recovery(held, resent_s, held_done_s, time.monotonic() - cut.down)


def wait_rejoined(worker: WorkerProcess, healed: float) -> float:
    """Seconds from the heal until the worker finished its stale job (a no-op by then)."""
    wait_until(lambda: not holds_a_job(worker), "w1 to finish its stale job", 60, interval=0.5)
    return time.monotonic() - healed


@dataclass
class TopUp:
    """Called while the cut waits for w1 to hold a job: `send(low)` more scans whenever fewer
    than `low` are queued, looked at most twice a second (a fast machine can drain a small
    backlog between two tries)."""

    engine: sa.Engine
    low: int
    send: Callable[[int], None]
    checked: float = 0.0

    def __call__(self) -> None:
        if time.monotonic() - self.checked < 0.5:
            return
        self.checked = time.monotonic()
        with self.engine.connect() as connection:
            queued = connection.scalar(sa.select(sa.func.count()).where(Scan.status == "queued"))
        if queued < self.low:
            self.send(self.low)
