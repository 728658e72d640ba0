"""The web stage: page and API latency on a big ledger, with 50 live worklist streams open.

python -m bench.web                          # 100,000 studies, 5,000 open urgent, SQLite
python -m bench.web --studies 10000 --urgent 500 --requests 50   # a smoke run

Seeds the ledger with bulk inserts (one slice per study), starts a real `triage web` process,
and measures from this process over HTTP: the worklist page, GET /api/v1/worklist and a study
page (p50/p95/p99 in ms), first with no event streams open, then with `--streams` open ones;
then acknowledges a study and counts the streams that were told. No workers run meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx

from bench.latency import percentiles
from testkit.services import free_port, wait_until
from ledger.accounts import add_token, add_user
from ledger.database import create_ledger_engine, upgrade_schema
from ledger.statements import results, scans, studies, urgent_cases
from schemas.tables import utcnow
from web.passwords import generate_token, hash_password, token_digest

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 5_000
PASSWORD = "bench web password"


def _rows(index: int, urgent: bool, now) -> tuple[dict, dict, dict]:  # noqa: ANN001
    study_id, scan_id = str(uuid.uuid4()), str(uuid.uuid4())
    p2 = 0.5 + (index % 500) / 1000 if urgent else (index % 400) / 1000
    at = now - timedelta(seconds=index)
    study = {
        "id": study_id, "study_uid": f"1.2.826.0.1.3680043.10.1.{index}", "accession": f"A{index}",
        "patient_id": f"P{index}", "priority": "routine", "status": "classified", "received_at": at,
        "last_instance_at": at, "closed_at": at, "classified_at": at, "p2": p2, "urgent": urgent,
        "predicted": 2 if urgent else 0, "top_scan_id": scan_id, "model_version": "bench", "decisions": 1,
    }  # fmt: skip
    scan = {"id": scan_id, "priority": "routine", "status": "done", "received_at": at,
            "attempts": 1, "study_id": study_id}  # fmt: skip
    result = {"scan_id": scan_id, "predicted": study["predicted"], "p0": 1 - p2, "p1": 0.0,
              "p2": p2, "urgent": urgent, "model_version": "bench", "classified_at": at}  # fmt: skip
    return study, scan, result


def seed(engine, count: int, urgent: int) -> str:  # noqa: ANN001 - Engine
    """`count` decided studies, the first `urgent` of them open on the worklist; returns a
    token for the API."""
    now = utcnow()
    for start in range(0, count, CHUNK):
        rows = [_rows(i, i < urgent, now) for i in range(start, min(count, start + CHUNK))]
        with engine.begin() as connection:
            connection.execute(studies.insert(), [row[0] for row in rows])
            connection.execute(scans.insert(), [row[1] for row in rows])
            connection.execute(results.insert(), [row[2] for row in rows])
            cases = [
                {"scan_id": s["top_scan_id"], "study_id": s["id"], "p2": s["p2"], "model_version": "bench",
                 "classified_at": s["classified_at"], "escalated_at": now}
                for s, _, _ in rows if s["urgent"]
            ]  # fmt: skip
            if cases:
                connection.execute(urgent_cases.insert(), cases)
    add_user(engine, "bench", "admin", hash_password(PASSWORD))
    token = generate_token()
    add_token(engine, "bench", "admin", token_digest(token))
    return token


def log_in(client: httpx.Client) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)[1]
    client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})


def timed(client: httpx.Client, path: str, requests: int, **kwargs) -> dict[str, float]:  # noqa: ANN003
    spent = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path, **kwargs)
        spent.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return percentiles(spent)


def measure(url: str, token: str, requests: int) -> dict[str, dict[str, float]]:
    with httpx.Client(base_url=url, timeout=60) as client:
        log_in(client)
        bearer = {"Authorization": f"Bearer {token}"}
        return {
            "worklist_page_ms": timed(client, "/", requests),
            "api_worklist_ms": timed(client, "/api/v1/worklist", requests, headers=bearer),
            "study_page_ms": timed(client, "/studies/1.2.826.0.1.3680043.10.1.7", requests),
        }


async def _listen(url: str, token: str, told: list[int], ready: asyncio.Event, count: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=None) as client,
        client.stream("GET", "/events/worklist", headers=headers) as stream,
    ):
        async for line in stream.aiter_lines():
            if line == "event: hello":
                told[0] += 1
                if told[0] == count:
                    ready.set()
            elif line == "event: worklist":
                told[1] += 1
                return


async def with_streams(url: str, token: str, streams: int, requests: int) -> dict:
    told, ready = [0, 0], asyncio.Event()
    listeners = [
        asyncio.create_task(_listen(url, token, told, ready, streams)) for _ in range(streams)
    ]
    await asyncio.wait_for(ready.wait(), 120)
    measured = await asyncio.to_thread(measure, url, token, requests)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await client.post("/api/v1/studies/1.2.826.0.1.3680043.10.1.3/ack", headers=headers)
    await asyncio.wait_for(asyncio.gather(*listeners), 60)
    return {**measured, "streams_open": told[0], "streams_told_of_the_ack": told[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--urgent", type=int, default=5_000)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="triage-bench-web-"))
    url = options.database_url or f"sqlite:///{directory / 'ledger.db'}"
    engine = create_ledger_engine(url)
    upgrade_schema(engine)
    started = time.perf_counter()
    token = seed(engine, options.studies, options.urgent)
    seeded_s = time.perf_counter() - started
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    env.update(
        TRIAGE_DATABASE_URL=url, TRIAGE_DATA_DIR=str(directory), TRIAGE_WEB_SECRET_KEY="b" * 40
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "triage", "web", "--port", str(port)], env=env, cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/healthz").status_code == 200, "triage web", timeout=60
        )
        quiet = measure(base, token, options.requests)
        busy = asyncio.run(with_streams(base, token, options.streams, options.requests))
    finally:
        server.terminate()
        server.wait(timeout=20)
    report = {"studies": options.studies, "open_urgent": options.urgent, "seed_s": round(seeded_s, 1),
              "backend": engine.dialect.name, "no_streams": quiet, f"with_{options.streams}_streams": busy}  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
