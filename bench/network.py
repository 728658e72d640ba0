"""Network stage: a worker host loses its link mid-backlog while it holds a job.

The scenario is testkit/partition.py's (hosts in network namespaces: `svc` with Redis,
PostgreSQL and the urgent worker with the beat, routine workers on `w1` and `w2`, w1 cut while
it holds a job); this stage sends synthetic phantoms from the gateway host, tops the queue up
until the cut (`topped_up` scans), and measures. Then the link comes back and every scan must
have exactly one result.

`partition_recovery_s` is the time from the cut (w1's port set down) until the whole backlog
is settled, with the link still down: every scan `done` and every urgent result on the
worklist, w1's stuck scans included. The integration test
(tests/integration/test_network_partition.py) runs the same scenario with its own assertions.

    python -m bench.network [--scans N] [--batch N] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ledger.studies import undecided_studies
from schemas.settings import Settings
from schemas.tables import Result, Scan, Study, UrgentCase
from testkit.environment import settings_pointed_at, worker_environment
from testkit.partition import (
    RECONCILE,
    RECONCILE_EVERY_S,
    STUCK_AFTER_S,
    VISIBILITY_TIMEOUT_S,
    Cut,
    Network,
    Recovery,
    Services,
    TopUp,
    cut_mid_job,
    done_count,
    host_network,
    recover,
    start_services,
    start_workers,
    unavailable,
    wait_rejoined,
)
from testkit.services import create_database, wait_until


def settled(engine: sa.Engine, total: int) -> bool:
    """Every scan done, every study decided, and every urgent study on the worklist (the
    worklist is by study: the card's study rule decides, not each slice's flag)."""
    with engine.connect() as connection:
        done = connection.scalar(sa.select(sa.func.count()).where(Scan.status == "done"))
        undecided = connection.scalar(undecided_studies(sa.func.count()))
        urgent = connection.scalar(sa.select(sa.func.count()).where(Study.urgent))
        cases = connection.scalar(sa.select(sa.func.count()).select_from(UrgentCase))
    return done == total and undecided == 0 and cases == urgent


def exactly_once(engine: sa.Engine, ids: list[str]) -> dict[str, int]:
    """Raise unless every scan has one result and every urgent one one worklist row."""
    with engine.connect() as connection:
        result_ids = connection.scalars(sa.select(Result.scan_id)).all()
        case_ids = connection.scalars(sa.select(UrgentCase.study_id)).all()
        urgent = set(connection.scalars(sa.select(Study.id).where(Study.urgent)))
        attempts = connection.scalar(sa.select(sa.func.sum(Scan.attempts)))
    lost = len(set(ids) - set(result_ids))
    duplicates = (len(result_ids) - len(set(result_ids))) + (len(case_ids) - len(set(case_ids)))
    if lost or duplicates or set(result_ids) != set(ids) or set(case_ids) != urgent:
        raise RuntimeError(f"not exactly once: lost {lost}, duplicated {duplicates}")
    return {
        "results": len(result_ids),
        "duplicates": duplicates,
        "lost": lost,
        "urgent_studies": len(urgent),
        "redeliveries": int(attempts) - len(ids),
    }


def _worker_env(settings: Settings) -> dict[str, str]:
    return worker_environment(settings) | RECONCILE


def _process_settings(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """This process's own settings name the stage's services while it runs (the Celery app
    reads its default broker from them), restored afterwards."""
    return settings_pointed_at({
        "TRIAGE_DATA_DIR": str(settings.data_dir),
        "TRIAGE_REDIS_URL": str(settings.redis_url),
        "TRIAGE_DATABASE_URL": settings.resolved_database_url,
    })  # fmt: skip


def _backlog(network: Network, model_root: Path, batch: int) -> tuple[Services, Settings]:
    """Services up, the database migrated: the settings the workers and this process share."""
    from bench.pipeline import prepare

    services = start_services(network, network.directory / "redis")
    settings = Settings(
        data_dir=network.directory / "data",
        database_url=create_database(services.admin_url),
        redis_url=services.redis_url,
        model_dir=model_root,
        batch_size=batch,
        stuck_after_seconds=STUCK_AFTER_S,
        reconcile_every_seconds=RECONCILE_EVERY_S,
    )
    prepare(settings)
    return services, settings


@dataclass
class PhantomSender:
    """The gateway host's scans: synthetic phantoms of the bench's mix, a new seed each call."""

    settings: Settings
    ids: list[str] = field(default_factory=list)
    seed: int = 3

    def send(self, count: int) -> None:
        from bench.environment import SCAN_MIX
        from bench.pipeline import enqueue
        from trainer.synth import make_phantoms

        images, _ = make_phantoms(count, SCAN_MIX, seed=self.seed)
        self.seed += 1
        self.ids += enqueue(images, self.settings)


def _measure(network: Network, console, scans: int, batch: int, model_root: Path) -> dict:  # noqa: ANN001
    """The flow: services, workers, enqueue, cut w1 mid-job, recover, heal, check."""
    from bench.pipeline import read_engine

    services, settings = _backlog(network, model_root, batch)
    with _process_settings(settings):
        urgent, w1, w2 = start_workers(
            network, services, _worker_env(settings), network.directory / "logs"
        )
        engine = read_engine(settings)
        sender = PhantomSender(settings)
        console.print(f"network: {scans:,} scans from the gateway host, w1 cut mid-job ...")
        sender.send(scans)
        wait_until(lambda: done_count(engine) >= scans // 5, "a fifth done", 120, interval=0.25)
        top_up = TopUp(engine, 4 * batch, sender.send)
        cut = cut_mid_job(network.hosts, services.w1, w1, engine, top_up)
        recovery = recover(engine, cut, lambda: settled(engine, len(sender.ids)))
        network.hosts.heal(services.w1)
        rejoined_s = wait_rejoined(w1, time.monotonic())
        figures = exactly_once(engine, sender.ids)
        for worker in (urgent, w1, w2):
            worker.check_alive()
    figures["topped_up"] = len(sender.ids) - scans  # sent while waiting to cut w1
    return _figures(services, len(sender.ids), cut, recovery, rejoined_s, figures)


def _figures(
    services: Services,
    scans: int,
    cut: Cut,
    recovery: Recovery,
    rejoined_s: float,
    figures: dict[str, int],
) -> dict:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "partition_recovery_s": round(recovery.recovered_s, 2),
        "scans": scans,
        **figures,
        "held_at_partition": len(recovery.held),
        "held_resent_s": rounded(recovery.resent_s),
        "held_done_s": rounded(recovery.held_done_s),
        "rejoined_s": round(rejoined_s, 2),
        "done_at_partition": cut.done_at_cut,
        "cuts": cut.tries,
        "stuck_after_s": STUCK_AFTER_S,
        "reconcile_every_s": RECONCILE_EVERY_S,
        "visibility_timeout_s": VISIBILITY_TIMEOUT_S,
        "hosts": {
            "svc": f"{services.svc.address}: redis, postgresql, urgent worker + beat",
            "w1": f"{services.w1.address}: routine worker (-Q stat,scans), partitioned",
            "w2": f"{services.w2.address}: routine worker (-Q stat,scans)",
        },
        "skipped": None,
    }


def run_network(
    console,  # noqa: ANN001 - rich Console
    scans: int = 1500,
    batch: int = 25,
    model_root: Path | None = None,
) -> dict:
    """Measure `partition_recovery_s` (see the module's docstring) on `scans` phantoms in
    batches of `batch`, served by the model under `model_root` (None: a quick baseline is
    published into a temp dir). {"skipped": reason} where namespaces or PostgreSQL are missing."""
    reason = unavailable()
    if reason:
        console.print(f"network stage skipped: {reason}")
        return {"skipped": reason}
    with contextlib.ExitStack() as stack:
        if model_root is None:
            from bench.environment import publish_baseline

            model_root = Path(tempfile.mkdtemp(prefix="triage-netmodel-"))
            stack.callback(shutil.rmtree, model_root, ignore_errors=True)
            publish_baseline(model_root, console)
        network = stack.enter_context(host_network())
        return _measure(network, console, scans, batch, model_root)


def main(argv: list[str] | None = None) -> dict:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m bench.network", description=__doc__)
    parser.add_argument("--scans", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--model-dir", type=Path, default=None, help="a published model root")
    options = parser.parse_args(argv)
    console = Console(stderr=True)
    results = run_network(console, options.scans, options.batch, options.model_dir)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
