"""Security with real Redis, PostgreSQL and worker processes.

- Celery accepts JSON only: a pickle message put straight into the queue is refused unread
  (its payload would create a file if it were unpickled) while a JSON job next to it runs.
- Redis with `requirepass` works end to end; a wrong or missing password fails with a clear
  error that never prints a password.
- A whole flow with workers logging at DEBUG leaves no accession, no pixel bytes and no
  credential in any worker log.
"""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from kombu import Connection, Exchange, Queue
from PIL import Image

from gateway.intake.client import submit_images
from ledger import scans as ledger
from ledger.database import engine_for, upgrade_schema
from schemas.queues import CLASSIFY_TASK, ROUTINE_QUEUE
from schemas.settings import get_settings
from schemas.tables import Scan, UrgentCase
from testkit.services import RedisServer
from tests.fixtures_model import brightness_scans
from tests.integration.conftest import Pipeline, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REDIS_PASSWORD = "rds-" + uuid.uuid4().hex  # noqa: S105 - a throwaway test secret
PG_PASSWORD = "pg-" + uuid.uuid4().hex


@pytest.fixture
def start(pipeline_factory):  # noqa: ANN001, ANN201
    """start(redis_url, database_url) -> a Pipeline on that Redis."""

    def make(redis_url: str, database_url: str, batch_size: int = 8) -> Pipeline:
        return pipeline_factory(database_url, batch_size, redis_url=redis_url)

    return make


@pytest.fixture
def redis_with_password(tmp_path: Path):  # noqa: ANN201
    server = RedisServer(tmp_path / "redis-auth", password=REDIS_PASSWORD).start()
    yield server
    server.stop()


class Canary:
    """Unpickling this creates a file: proof that a message was (or was not) deserialized."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_a_pickle_message_is_refused_and_the_json_job_next_to_it_goes_through(
    start, redis_server: str, tmp_path: Path
) -> None:
    pipeline = start(redis_server, f"sqlite:///{tmp_path / 'ledger.db'}")
    engine = engine_for(get_settings().resolved_database_url)
    upgrade_schema(engine)
    smuggled = [str(uuid.uuid4()) for _ in range(3)]
    ledger.add_scans(
        engine,
        [
            ledger.NewScan(i, s.tobytes(), None, "x")
            for i, s in zip(smuggled, brightness_scans([60] * 3), strict=True)
        ],
        "routine",
    )
    pipeline.start_worker("stat,scans", "routine")
    canary = tmp_path / "unpickled-canary"
    task_id = str(uuid.uuid4())
    body = (
        [{"scan_ids": smuggled, "priority": "routine", "x": Canary(canary)}],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    )
    with Connection(pipeline.redis_url) as connection:
        connection.Producer().publish(
            pickle.dumps(body),
            exchange=Exchange(ROUTINE_QUEUE),
            routing_key=ROUTINE_QUEUE,
            declare=[Queue(ROUTINE_QUEUE, Exchange(ROUTINE_QUEUE), ROUTINE_QUEUE)],
            content_type="application/x-python-serialize",
            content_encoding="binary",
            serializer=None,
            headers={"lang": "py", "task": CLASSIFY_TASK, "id": task_id, "root_id": task_id},
            correlation_id=task_id,
        )
    good = submit_images(brightness_scans([50, 220, 70], seed=9))  # JSON, right behind it

    def good_done() -> bool:
        with engine.connect() as connection:
            return connection.scalar(
                sa.select(sa.func.count()).where(
                    Scan.id.in_([i for i, _ in good.queued]), Scan.status == "done"
                )
            ) == len(good.queued)

    wait_for(good_done, "the JSON job behind the pickle message")
    wait_for(lambda: pipeline.queue_length(ROUTINE_QUEUE) == 0, "the queue to be empty")
    with engine.connect() as connection:
        smuggled_rows = connection.execute(
            sa.select(Scan.status, Scan.attempts).where(Scan.id.in_(smuggled))
        ).all()
    assert not canary.exists(), "the pickle payload was deserialized"
    assert {tuple(row) for row in smuggled_rows} == {("queued", 0)}  # nothing classified
    logs = pipeline.worker_logs()
    assert "Refusing to deserialize untrusted content of type pickle" in logs


def write_pngs(folder: Path, means: list[int]) -> dict[str, np.ndarray]:
    """PNG files named by distinctive accessions; returns accession -> pixels."""
    folder.mkdir(parents=True)
    scans = brightness_scans(means, seed=21)
    written = {}
    for scan in scans:
        accession = f"ACCQZ{uuid.uuid4().hex[:8].upper()}"
        Image.fromarray(scan).save(folder / f"{accession}.png")
        written[accession] = scan
    return written


def database_with_password(admin_url: str) -> str:
    """A new role with a password and its own database; the URL carries the password."""
    role, name = f"app_{uuid.uuid4().hex[:8]}", f"secure_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'"))
        connection.execute(sa.text(f'CREATE DATABASE "{name}" OWNER {role}'))
    admin.dispose()
    host = admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+psycopg://{role}:{PG_PASSWORD}@{host}/{name}"


def pixel_patterns(scan: np.ndarray) -> list[str]:
    """How pixel bytes would look in a log: bytes repr, hex, base64, a numpy row."""
    raw = scan.tobytes()
    return [
        repr(raw[:12])[2:-1],
        raw[:16].hex(),
        base64.b64encode(raw[:24]).decode(),
        " ".join(str(int(v)) for v in scan[0, :8]),
        ", ".join(str(int(v)) for v in scan[0, :8]),
    ]


def test_a_whole_flow_with_passwords_logs_no_accession_pixels_or_credentials(
    start, redis_with_password: RedisServer, postgres_admin_url: str, tmp_path: Path
) -> None:
    pipeline = start(redis_with_password.url, database_with_password(postgres_admin_url))
    debug = ("--loglevel", "DEBUG")
    pipeline.start_worker("urgent", "urgent", extra_args=debug)
    pipeline.start_worker("stat,scans", "routine", extra_args=debug)
    scans = write_pngs(tmp_path / "incoming", [40, 230, 60, 225, 80, 90, 235, 50])

    enqueued = pipeline.triage("enqueue", str(tmp_path / "incoming"), "--accession-from-filename")
    assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
    engine = engine_for(get_settings().resolved_database_url)

    def settled() -> bool:
        with engine.connect() as connection:
            done = connection.scalar(sa.select(sa.func.count()).where(Scan.status == "done"))
            cases = connection.scalar(sa.select(sa.func.count()).select_from(UrgentCase))
        return done == len(scans) and cases == 3

    wait_for(settled, "the flow to finish through the password-protected Redis")
    reconciled = pipeline.triage("reconcile")
    results = json.loads(pipeline.triage("results", "--json").stdout)
    assert reconciled.returncode == 0 and len(results) == len(scans)

    logs = pipeline.worker_logs()
    assert "DEBUG" in logs and "succeeded" in logs  # the logs are real and verbose
    leaks = [a for a in scans if a in logs]
    leaks += [p for scan in scans.values() for p in pixel_patterns(scan) if p in logs]
    leaks += [secret for secret in (REDIS_PASSWORD, PG_PASSWORD) if secret in logs]
    outputs = enqueued.stderr + reconciled.stdout + reconciled.stderr
    leaks += [secret for secret in (REDIS_PASSWORD, PG_PASSWORD) if secret in outputs]
    assert not leaks, f"found in logs: {leaks}"


def test_a_wrong_or_missing_redis_password_fails_clearly_without_printing_it(
    start, redis_with_password: RedisServer, tmp_path: Path
) -> None:
    pipeline = start(redis_with_password.url, f"sqlite:///{tmp_path / 'ledger.db'}")
    Image.fromarray(brightness_scans([90])[0]).save(tmp_path / "scan.png")
    wrong = "wrong-" + uuid.uuid4().hex
    port = redis_with_password.port
    for url, words in (
        (f"redis://:{wrong}@127.0.0.1:{port}/0", ("invalid", "password")),
        (f"redis://127.0.0.1:{port}/0", ("authentication",)),
    ):
        pipeline.env["TRIAGE_REDIS_URL"] = url
        enqueued = pipeline.triage("enqueue", str(tmp_path / "scan.png"))
        reconciled = pipeline.triage("reconcile")
        for finished in (enqueued, reconciled):
            output = (finished.stdout + finished.stderr).lower()
            assert finished.returncode == 2, output
            assert all(word in output for word in words), output
            assert wrong.lower() not in output and REDIS_PASSWORD.lower() not in output
            assert "traceback" not in output
        assert "triage reconcile" in enqueued.stderr  # the scan is kept and will be re-sent
