"""`triage demo`: the whole system in one command, on synthetic phantoms and embedded defaults.

phantoms -> quick training -> migrations -> routine + urgent workers (child processes) ->
enqueue a held-out batch -> progress until every scan is classified -> worklist and summary ->
workers stopped (also on Ctrl-C or an error). Everything lives under TRIAGE_DATA_DIR/demo;
the ledger and the broker are the configured ones (embedded SQLite and Redis by default).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from schemas.model_card import (
    CLASS_NAMES,
    URGENT_CLASS,
    ModelNotFoundError,
    read_card,
    resolve_model_dir,
)
from schemas.settings import Settings
from triage.demo_workers import DemoError, WorkerProcesses

TRAIN_MIX = (0.34, 0.33, 0.33)  # many distinct urgent phantoms: a quick model learns them best
BATCH_MIX = (0.79, 0.18, 0.03)  # the original problem's class mix
DEMO_CANDIDATES = ("baseline_2conv",)
POLL_SECONDS = 0.25
WORKLIST_ROWS = 15


@dataclass(frozen=True)
class DemoOptions:
    """Sizes of one demo run; the defaults train in one to two minutes on two cores."""

    scans: int = 200
    train_scans: int = 1500
    epochs: int = 16
    seed: int = 0
    retrain: bool = False
    timeout: float = 300.0


@dataclass(frozen=True)
class DemoResult:
    """What one run did, for the summary and for tests."""

    scan_ids: list[str]
    labels: np.ndarray
    model_version: str
    urgent_threshold: float
    seconds_to_classify: float

    @property
    def throughput(self) -> float:
        return len(self.scan_ids) / max(self.seconds_to_classify, 1e-9)


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> DemoResult:
    """Run the whole flow once; the worker processes are stopped however it ends."""
    if settings.environment == "production":
        raise DemoError(
            "triage demo writes synthetic scans into the ledger; it refuses "
            "TRIAGE_ENVIRONMENT=production"
        )
    home = settings.resolved_data_dir / "demo"
    model_root = home / "models"
    console.rule("[bold]triage demo[/bold]: synthetic phantom scans, not patients")
    model_dir = ensure_model(model_root, options, console)
    prepare_ledger(settings, console)
    started_broker = start_embedded_broker(settings)
    workers = WorkerProcesses(settings, home / "logs", model_root)
    try:
        workers.start("routine", "stat,scans")
        workers.start("urgent", "urgent")
        console.print("starting workers (each loads TensorFlow and the model) ...")
        workers.wait_ready(timeout=options.timeout)
        images, labels = held_out_batch(options)
        scan_ids, started = enqueue(settings, images, console)
        wait_for_results(settings, scan_ids, workers, options.timeout, console)
        elapsed = time.monotonic() - started
        threshold = read_card(model_dir).urgent_threshold
        result = DemoResult(scan_ids, labels, model_dir.name, threshold, elapsed)
    finally:
        workers.stop(console)
        if started_broker:
            from worker.broker import stop_embedded_redis

            stop_embedded_redis(embedded_redis_dir(settings))
    show_results(settings, result, console)
    return result


def ensure_model(model_root: Path, options: DemoOptions, console: Console) -> Path:
    """The demo's current model: reused from an earlier run unless --retrain, else trained."""
    if not options.retrain:
        try:
            model_dir = resolve_model_dir(model_root)
        except ModelNotFoundError:
            pass
        else:
            console.print(f"reusing the demo model {model_dir.name} (--retrain trains again)")
            return model_dir
    from trainer.synth import make_phantoms
    from trainer.train import run_training

    console.print(
        f"training on {options.train_scans} synthetic phantoms, {options.epochs} epochs "
        f"(candidate {', '.join(DEMO_CANDIDATES)}) ..."
    )
    images, labels = make_phantoms(options.train_scans, TRAIN_MIX, seed=options.seed)
    return run_training(
        (images, labels),
        out=model_root,
        epochs=options.epochs,
        seed=options.seed,
        candidates=DEMO_CANDIDATES,
        console=console,
    )


def prepare_ledger(settings: Settings, console: Console) -> None:
    from worker.database import engine_for, ensure_schema

    if ensure_schema(engine_for(settings.resolved_database_url)):
        console.print("database migrated to the latest schema")


def embedded_redis_dir(settings: Settings) -> Path:
    return settings.resolved_data_dir / "redis"


def start_embedded_broker(settings: Settings) -> bool:
    """Start the embedded Redis if it is the broker and not running; True if this call did."""
    import redis

    from worker.broker import SOCKET_NAME, ensure_embedded_redis
    from worker.monitor import redis_client

    if not settings.uses_embedded_redis:
        return False
    socket_path = embedded_redis_dir(settings) / SOCKET_NAME
    try:
        running = redis_client(f"redis+socket://{socket_path}").ping()
    except (OSError, redis.RedisError):
        running = False
    ensure_embedded_redis(embedded_redis_dir(settings))
    return not running


def held_out_batch(options: DemoOptions) -> tuple[np.ndarray, np.ndarray]:
    """Phantoms the model never saw (another seed than the training set's)."""
    from trainer.synth import make_phantoms

    return make_phantoms(options.scans, BATCH_MIX, seed=options.seed + 1_000_003)


def enqueue(settings: Settings, images: np.ndarray, console: Console) -> tuple[list[str], float]:
    """Submit the batch through the hospital-facing API; returns ids and the start time."""
    from worker.client import submit_images

    stamp = time.strftime("%Y%m%d-%H%M%S")
    accessions = [f"PHANTOM-{stamp}-{index:04d}" for index in range(len(images))]
    started = time.monotonic()
    submission = submit_images(list(images), accessions=accessions, settings=settings)
    if submission.rejected:
        raise DemoError(f"{len(submission.rejected)} phantoms refused: {submission.rejected[0]}")
    console.print(f"enqueued {len(submission.queued)} held-out phantoms in {submission.jobs} jobs")
    return [scan_id for scan_id, _source in submission.queued], started


def wait_for_results(
    settings: Settings,
    scan_ids: list[str],
    workers: WorkerProcesses,
    timeout: float,
    console: Console,
) -> None:
    """A progress bar until every scan is done or failed and every urgent one is on the list."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from worker.database import engine_for

    engine = engine_for(settings.resolved_database_url)
    deadline = time.monotonic() + timeout
    with Progress(
        "classifying", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("scans", total=len(scan_ids))
        while True:
            state = ledger_state(engine, scan_ids)
            progress.update(task, completed=state["finished"])
            if state["finished"] == len(scan_ids) and not state["escalations_waiting"]:
                return
            workers.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(stuck_message(engine, scan_ids, timeout, workers))
            time.sleep(POLL_SECONDS)


def ledger_state(engine: Any, scan_ids: list[str]) -> dict[str, int]:  # noqa: ANN401 - Engine
    """Finished scans (done or failed), and urgent results not yet on the worklist."""
    import sqlalchemy as sa

    from schemas.tables import Result, Scan, UrgentCase

    with engine.connect() as connection:
        finished = connection.execute(
            sa.select(sa.func.count()).where(
                Scan.id.in_(scan_ids), Scan.status.in_(("done", "failed"))
            )
        ).scalar_one()
        waiting = connection.execute(
            sa.select(sa.func.count())
            .select_from(Result)
            .outerjoin(UrgentCase, UrgentCase.scan_id == Result.scan_id)
            .where(
                Result.scan_id.in_(scan_ids),
                Result.urgent.is_(True),
                UrgentCase.scan_id.is_(None),
            )
        ).scalar_one()
    return {"finished": finished, "escalations_waiting": waiting}


def stuck_message(
    engine: Any,  # noqa: ANN401 - Engine
    scan_ids: list[str],
    timeout: float,
    workers: WorkerProcesses,
) -> str:
    import sqlalchemy as sa

    from schemas.tables import Scan

    with engine.connect() as connection:
        stuck = connection.execute(
            sa.select(Scan.id, Scan.status)
            .where(Scan.id.in_(scan_ids), Scan.status.not_in(("done", "failed")))
            .order_by(Scan.received_at)
        ).all()
    shown = ", ".join(f"{scan_id} ({status})" for scan_id, status in stuck[:10])
    more = f" and {len(stuck) - 10} more" if len(stuck) > 10 else ""
    return (
        f"timed out after {timeout:.0f} s with {len(stuck)} scans unfinished: {shown}{more}; "
        f"worker logs: {workers.log_dir}"
    )


def show_results(settings: Settings, result: DemoResult, console: Console) -> None:
    """The urgent worklist of this batch, then counts per class and throughput."""
    from worker.database import engine_for
    from worker.worklist import list_results, worklist

    engine = engine_for(settings.resolved_database_url)
    batch = set(result.scan_ids)
    cases = [case for case in worklist(engine) if case["scan_id"] in batch]
    table = Table(title=f"Urgent worklist ({len(cases)} open cases from this batch)")
    for column in ("#", "scan id", "accession", "P(class 2)", "on the list after"):
        table.add_column(column, justify="left" if column in ("scan id", "accession") else "right")
    for rank, case in enumerate(cases[:WORKLIST_ROWS], 1):
        listed_after = (case["escalated_at"] - case["received_at"]).total_seconds()
        table.add_row(
            str(rank),
            case["scan_id"],
            case["accession"] or "",
            f"{case['p2']:.3f}",
            f"{listed_after:.1f} s",
        )
    console.print(table)
    if len(cases) > WORKLIST_ROWS:
        console.print(f"... and {len(cases) - WORKLIST_ROWS} more: `triage urgent` lists them all")

    rows = [row for row in list_results(engine) if row["scan_id"] in batch]
    predicted = np.bincount([row["predicted"] for row in rows], minlength=len(CLASS_NAMES))
    truth = np.bincount(result.labels, minlength=len(CLASS_NAMES))
    flagged = {row["scan_id"] for row in rows if row["urgent"]}
    truly_urgent = {
        scan_id
        for scan_id, label in zip(result.scan_ids, result.labels, strict=True)
        if label == URGENT_CLASS
    }
    summary = Table(title=f"Summary (model {result.model_version}, synthetic phantoms)")
    summary.add_column("class")
    summary.add_column("phantoms", justify="right")
    summary.add_column("predicted", justify="right")
    for index, name in enumerate(CLASS_NAMES):
        summary.add_row(f"{index} {name}", str(truth[index]), str(predicted[index]))
    console.print(summary)
    caught = len(flagged & truly_urgent)
    console.print(
        f"{len(rows)} of {len(result.scan_ids)} scans classified in "
        f"{result.seconds_to_classify:.1f} s ({result.throughput:.1f} scans/s); "
        f"{len(flagged)} flagged urgent, {caught} of {len(truly_urgent)} urgent phantoms caught; "
        f"{len(cases)} on the worklist."
    )
    console.print(
        f"urgent flag: P(class 2) >= {result.urgent_threshold:.3f}, the threshold the trainer "
        "chose on validation to reach the target class-2 recall (missing an urgent case costs "
        "more than a false alarm)."
    )
    console.print(
        "next: `triage urgent`, `triage results`, `triage stats`; the README shows the same "
        "flow on your own data."
    )
