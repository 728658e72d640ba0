"""`triage demo`: the whole system in one command, on synthetic phantoms and embedded defaults.

phantoms -> the default recipe trained on them (every candidate + the ensemble, selected by
out-of-fold macro F1, as `triage train`; two folds, no estimate) -> migrations -> routine + urgent workers (child processes) ->
enqueue a held-out batch -> progress until every scan is classified -> worklist and summary ->
workers stopped (also on Ctrl-C or an error) -> the web page on the demo's ledger with a
one-time login (triage/demo_web.py) until Ctrl-C, unless `--no-web`. Everything lives under
TRIAGE_DATA_DIR/demo; the ledger and the broker are the configured ones (embedded SQLite and
Redis by default); an embedded Redis the demo started runs until the web page stops.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from gateway.broker.server import (
    SOCKET_NAME,
    broker_url,
    ensure_embedded_redis,
    redis_client,
    stop_embedded_redis,
)
from gateway.intake.client import submit_images
from ledger.database import engine_for, upgrade_schema
from schemas.model_card import (
    ModelNotFoundError,
    read_card,
    resolve_model_dir,
)
from schemas.settings import Settings
from trainer.phantom_model import TRAIN_SCANS, publish_on_phantoms
from triage.demo_report import DemoResult, show_results
from triage.demo_web import WebNotServing, serve_demo_web
from worker.processes import (
    WorkerExited,
    WorkerProcess,
    celery_worker,
    stop_workers,
    wait_ready,
)

BATCH_MIX = (0.79, 0.18, 0.03)  # the original problem's class mix
POLL_SECONDS = 0.25
SLICES_PER_EXAM = 4  # the demo's exams: a few slices each, decided as one study


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and where to look."""


@dataclass(frozen=True)
class DemoOptions:
    """Sizes of one demo run; `epochs` None: each candidate's own, as `triage train`."""

    scans: int = 200
    train_scans: int = TRAIN_SCANS
    epochs: int | None = None
    seed: int = 0
    retrain: bool = False
    timeout: float = 300.0
    web: bool = True  # serve the web page on the demo's ledger until Ctrl-C
    web_port: int | None = None  # None: demo_web.PREFERRED_PORT when free, else any free port


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> DemoResult:
    """Run the whole flow once, then serve the web page until Ctrl-C (with `options.web`);
    the worker processes, the web page and an embedded Redis it started are stopped however
    it ends."""
    if settings.environment == "production":
        raise DemoError(
            "triage demo writes synthetic scans into the ledger; it refuses "
            "TRIAGE_ENVIRONMENT=production"
        )
    home = settings.resolved_data_dir / "demo"
    console.rule("[bold]triage demo[/bold]: synthetic phantom scans, not patients")
    model_dir = ensure_model(home / "models", options, console)
    prepare_ledger(settings, console)
    started_broker = start_embedded_broker(settings)
    try:
        result = classify_batch(settings, options, home, model_dir, console)
        show_results(settings, result, console)
        if options.web:
            engine = engine_for(settings.resolved_database_url)
            serve_demo_web(
                settings, engine, home / "logs", options.web_port, options.timeout, console
            )
    except WebNotServing as error:
        raise DemoError(str(error)) from None
    finally:
        if started_broker:
            stop_embedded_redis(embedded_redis_dir(settings))
    return result


def classify_batch(
    settings: Settings, options: DemoOptions, home: Path, model_dir: Path, console: Console
) -> DemoResult:
    """Start the workers, enqueue the held-out batch and wait until it is classified and
    decided; the workers are stopped however it ends."""
    workers = start_workers(settings, home / "logs", home / "models")
    try:
        console.print("starting workers (each loads TensorFlow and the model) ...")
        wait_ready(workers, broker_url(settings), options.timeout)
        images, labels = held_out_batch(options)
        scan_ids, started = enqueue(settings, images, console)
        wait_for_results(settings, scan_ids, workers, options.timeout, console)
        elapsed = time.monotonic() - started
        threshold = read_card(model_dir).urgent_threshold
        return DemoResult(scan_ids, labels, model_dir.name, threshold, elapsed)
    except WorkerExited as error:
        raise DemoError(f"{error}\nworker logs: {home / 'logs'}") from None
    finally:
        running = [worker.name for worker in workers if worker.process.poll() is None]
        if running:
            console.print(f"stopping workers: {', '.join(running)}")
        stop_workers(workers)


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
    epochs = "each candidate's own epochs" if options.epochs is None else f"{options.epochs} epochs"
    console.print(
        f"training the default recipe on {options.train_scans} synthetic phantoms ({epochs}, "
        "two folds, no estimate) ..."
    )
    return publish_on_phantoms(
        model_root, options.train_scans, options.seed, options.epochs, console
    )


def start_workers(settings: Settings, log_dir: Path, model_root: Path) -> list[WorkerProcess]:
    """The routine (`stat,scans`) and urgent workers, on the demo's settings and model."""
    env = dict(
        os.environ,
        TRIAGE_DATA_DIR=str(settings.resolved_data_dir),
        TRIAGE_MODEL_DIR=str(model_root),
    )
    return [
        celery_worker("demo-routine", "stat,scans", env, log_dir, extra_args=()),
        celery_worker("demo-urgent", "urgent", env, log_dir, extra_args=()),
    ]


def prepare_ledger(settings: Settings, console: Console) -> None:
    if upgrade_schema(engine_for(settings.resolved_database_url)):
        console.print("database migrated to the latest schema")


def embedded_redis_dir(settings: Settings) -> Path:
    return settings.resolved_data_dir / "redis"


def start_embedded_broker(settings: Settings) -> bool:
    """Start the embedded Redis if it is the broker and not running; True if this call did."""
    import redis

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
    """Submit the batch through the hospital-facing API as exams of SLICES_PER_EXAM phantoms
    (one call per exam, as a hospital system sends them); returns ids and the start time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    scan_ids: list[str] = []
    jobs = 0
    for first in range(0, len(images), SLICES_PER_EXAM):
        exam = f"PHANTOM-{stamp}-{first // SLICES_PER_EXAM:03d}"
        slices = list(images[first : first + SLICES_PER_EXAM])
        accessions = [f"{exam}-{index}" for index in range(len(slices))]
        submission = submit_images(slices, accessions=accessions, settings=settings, study=exam)
        if submission.rejected:
            raise DemoError(f"phantoms refused: {submission.rejected[0]}")
        scan_ids += [scan_id for scan_id, _source in submission.queued]
        jobs += submission.jobs
    exams = -(-len(images) // SLICES_PER_EXAM)
    console.print(f"enqueued {len(scan_ids)} held-out phantoms as {exams} exams in {jobs} jobs")
    return scan_ids, started


def wait_for_results(
    settings: Settings,
    scan_ids: list[str],
    workers: list[WorkerProcess],
    timeout: float,
    console: Console,
) -> None:
    """A progress bar until every scan is done or failed and every urgent one is on the list."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    engine = engine_for(settings.resolved_database_url)
    deadline = time.monotonic() + timeout
    with Progress(
        "classifying", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("scans", total=len(scan_ids))
        while True:
            state = ledger_state(engine, scan_ids)
            progress.update(task, completed=state["finished"])
            if (
                state["finished"] == len(scan_ids)
                and not state["undecided"] + state["escalations_waiting"]
            ):
                return
            for worker in workers:
                worker.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(stuck_message(engine, scan_ids, timeout, workers))
            time.sleep(POLL_SECONDS)


def ledger_state(engine: Any, scan_ids: list[str]) -> dict[str, int]:  # noqa: ANN401 - Engine
    """Finished scans (done or failed), their studies not decided yet (a job records its results,
    then decides), and urgent studies not yet on the worklist."""
    import sqlalchemy as sa

    from ledger.statements import scans, studies
    from ledger.studies import undecided_studies
    from ledger.worklist import unlisted_urgent

    of_these = studies.c.id.in_(sa.select(scans.c.study_id).where(scans.c.id.in_(scan_ids)))
    with engine.connect() as connection:
        finished = connection.execute(
            sa.select(sa.func.count()).where(
                scans.c.id.in_(scan_ids), scans.c.status.in_(("done", "failed"))
            )
        ).scalar_one()
        undecided = connection.execute(
            undecided_studies(sa.func.count()).where(of_these)
        ).scalar_one()
        waiting = connection.execute(unlisted_urgent(sa.func.count()).where(of_these)).scalar_one()
    return {"finished": finished, "undecided": undecided, "escalations_waiting": waiting}


def stuck_message(
    engine: Any,  # noqa: ANN401 - Engine
    scan_ids: list[str],
    timeout: float,
    workers: list[WorkerProcess],
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
        f"worker logs: {workers[0].log_path.parent}"
    )
