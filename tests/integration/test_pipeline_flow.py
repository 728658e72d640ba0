"""A few hundred scans through the CLI, Redis, real worker processes and a real database."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from gateway.broker.publish import publish_jobs
from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Result, Scan, UrgentCase
from tests.fixtures_model import BRIGHTNESS_MODEL_VERSION, brightness_scans
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def write_scans(folder: Path, count: int, seed: int) -> dict[str, bool]:
    """PNG files and one NPY stack of dark (class 0) and bright (urgent) scans.

    Returns accession (file stem, `[i]` inside the stack) -> must be urgent.
    """
    rng = np.random.default_rng(seed)
    urgent = rng.random(count) < 0.3
    means = np.where(urgent, rng.integers(170, 240, count), rng.integers(20, 100, count))
    scans = brightness_scans(means.tolist(), seed=seed)
    folder.mkdir(parents=True)
    expected: dict[str, bool] = {}
    in_stack = count // 3
    np.save(folder / "stack.npy", scans[:in_stack])
    for index in range(in_stack):
        expected[f"stack[{index}]"] = bool(urgent[index])
    for index in range(in_stack, count):
        Image.fromarray(scans[index]).save(folder / f"ACC{index:04d}.png")
        expected[f"ACC{index:04d}"] = bool(urgent[index])
    return expected


def test_every_scan_gets_one_result_and_every_urgent_one_reaches_the_worklist(
    pipeline_factory, database_url: str, tmp_path: Path
) -> None:
    pipeline = pipeline_factory(database_url, batch_size=32)
    expected = write_scans(tmp_path / "incoming", count=300, seed=7)
    (tmp_path / "incoming" / "notes.png").write_text("not an image")
    pipeline.start_worker("urgent", "urgent")
    pipeline.start_worker("stat,scans", "routine", pool="prefork")

    enqueued = pipeline.triage("enqueue", str(tmp_path / "incoming"), "--accession-from-filename")

    assert enqueued.returncode == 1, enqueued.stderr  # one input rejected ...
    assert "rejected" in enqueued.stdout and "notes.png" in enqueued.stdout
    assert enqueued.stdout.count("queued    ") == 300  # ... and every good scan queued
    engine = engine_for(get_settings().resolved_database_url)
    urgent_accessions = {name for name, urgent in expected.items() if urgent}

    def settled() -> bool:
        with engine.connect() as connection:
            done = connection.scalar(sa.select(sa.func.count()).where(Scan.status == "done"))
            cases = connection.scalar(sa.select(sa.func.count()).select_from(UrgentCase))
        return done == 300 and cases == len(urgent_accessions)

    wait_for(settled, "300 results and the urgent worklist")

    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(Scan.accession, Scan.status, Result.urgent, Result.model_version).join(
                Result, Result.scan_id == Scan.id
            )
        ).all()
        case_accessions = connection.scalars(
            sa.select(Scan.accession).join(UrgentCase, UrgentCase.scan_id == Scan.id)
        ).all()
    assert len(rows) == 300 and {row.accession for row in rows} == set(expected)
    assert {row.status for row in rows} == {"done"}
    assert {row.model_version for row in rows} == {BRIGHTNESS_MODEL_VERSION}
    assert {row.accession for row in rows if row.urgent} == urgent_accessions
    assert sorted(case_accessions) == sorted(urgent_accessions)  # each exactly once

    worklist = json.loads(pipeline.triage("urgent", "--json").stdout)
    assert {case["accession"] for case in worklist} == urgent_accessions
    assert [case["p2"] for case in worklist] == sorted((c["p2"] for c in worklist), reverse=True)
    assert not any(case["acknowledged"] for case in worklist)
    assert {case["model_version"] for case in worklist} == {BRIGHTNESS_MODEL_VERSION}

    # a job delivered again changes nothing: still one result and one worklist row per scan
    with engine.connect() as connection:
        some_ids = connection.scalars(sa.select(Scan.id).limit(40)).all()
    publish_jobs(some_ids, "routine", get_settings())
    wait_for(
        lambda: pipeline.queue_length("scans") == 0 and pipeline.broker().hlen("unacked") == 0,
        "the repeated job to be consumed",
    )
    results = json.loads(pipeline.triage("results", "--json").stdout)
    assert len(results) == 300 and len({row["scan_id"] for row in results}) == 300
    assert len(json.loads(pipeline.triage("urgent", "--json").stdout)) == len(urgent_accessions)

    # a clinician reviews the most urgent case: it leaves the open worklist, stays in --all
    first = worklist[0]["scan_id"]
    assert pipeline.triage("ack", first).returncode == 0
    open_cases = json.loads(pipeline.triage("urgent", "--json").stdout)
    every_case = json.loads(pipeline.triage("urgent", "--json", "--all").stdout)
    assert first not in {case["scan_id"] for case in open_cases}
    assert [case["acknowledged"] for case in every_case if case["scan_id"] == first] == [True]
    history = pipeline.triage("status", first)
    assert (
        history.returncode == 0 and "done" in history.stdout and "acknowledged_at" in history.stdout
    )
    assert "stack[" not in pipeline.worker_logs() and "ACC0" not in pipeline.worker_logs()
