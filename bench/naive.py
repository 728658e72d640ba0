"""Stage 3: the naive peer, the common tutorial design, on the same machine and data.

One Celery task per scan, `model.predict` per task, one ORM commit per scan, both at enqueue
and for each result. It lives here only, as a yardstick: `celery -A bench.naive worker -Q naive`.
It writes to the same tables (so it reads the same pixels) but skips escalation, which only
flatters it. Its rate is about 13 scans/s here, so the benchmark runs it on fewer scans.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from celery import Celery, signals
from sqlalchemy.orm import Session

from imaging.canonical import SCAN_SIZE, to_model_input
from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Result, Scan, ScanPixels

NAIVE_QUEUE = "naive"
NAIVE_TASK = "bench.naive.classify_one"
WARMUP_SCANS = 8

app = Celery("naive", set_as_current=False)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=NAIVE_QUEUE,
    worker_proc_alive_timeout=60.0,  # importing TensorFlow takes ~5 s here
    broker_connection_retry_on_startup=True,
)
app.add_defaults(lambda: {"broker_url": get_settings().redis_url})
_model: Any = None


@signals.worker_process_init.connect
def _load_model(**_: Any) -> None:
    global _model
    import keras

    from schemas.model_card import MODEL_FILE, resolve_model_dir

    directory = resolve_model_dir(get_settings().resolved_model_dir)
    _model = keras.saving.load_model(directory / MODEL_FILE, compile=False)


@app.task(name=NAIVE_TASK)
def classify_one(scan_id: str) -> None:
    """The tutorial task: load one scan, `model.predict` it, commit its result."""
    with Session(engine_for(get_settings().resolved_database_url)) as session:
        scan = session.get(Scan, scan_id)
        stored = session.get(ScanPixels, scan_id)
        pixels = np.frombuffer(stored.pixels, np.uint8).reshape(1, SCAN_SIZE, SCAN_SIZE)
        probabilities = _model.predict(to_model_input(pixels), verbose=0)[0]
        session.add(
            Result(
                scan_id=scan_id,
                predicted=int(np.argmax(probabilities)),
                p0=float(probabilities[0]),
                p1=float(probabilities[1]),
                p2=float(probabilities[2]),
                urgent=bool(np.argmax(probabilities) == 2),
                model_version="naive",
            )
        )
        scan.status = "done"
        session.commit()


def enqueue_naive(images: np.ndarray, database_url: str, broker: str) -> list[str]:
    """The tutorial producer: per scan, one ORM commit and one `delay`."""
    ids = []
    with app.connection_for_write(broker) as connection:
        producer = app.amqp.Producer(connection)
        with Session(engine_for(database_url)) as session:
            for image in images:
                scan_id = str(uuid.uuid4())
                session.add(Scan(id=scan_id, priority="routine"))
                session.add(ScanPixels(scan_id=scan_id, pixels=image.tobytes()))
                session.commit()
                classify_one.apply_async(args=[scan_id], producer=producer)
                ids.append(scan_id)
    return ids


def run_naive(env, scans: int, log_dir: Path) -> float:  # noqa: ANN001 - BenchEnvironment
    """Scans per second of the naive design, from the first enqueue to the last result."""
    from bench.pipeline import POLL_S, count, prepare, read_engine
    from testkit.environment import worker_environment
    from testkit.services import wait_until
    from testkit.workers import start_worker
    from worker.processes import stop_workers

    settings = env.settings(env.fresh_database("sqlite"))
    prepare(settings)
    engine = read_engine(settings)
    results = Result.__table__
    worker_env = worker_environment(settings)
    worker = start_worker(
        "bench.naive", NAIVE_QUEUE, "naive", worker_env, log_dir, settings.redis_url
    )
    try:
        url = settings.resolved_database_url
        enqueue_naive(env.scans[:WARMUP_SCANS], url, settings.redis_url)
        wait_until(
            lambda: count(engine, results) >= WARMUP_SCANS, "naive warm-up", 300, interval=POLL_S
        )
        started = time.perf_counter()
        enqueue_naive(env.scans[:scans], url, settings.redis_url)
        timeout = max(300.0, scans)
        wait_until(
            lambda: count(engine, results) >= WARMUP_SCANS + scans,
            "naive results",
            timeout,
            interval=POLL_S,
        )
        return scans / (time.perf_counter() - started)
    finally:
        stop_workers([worker])
        engine.dispose()
