"""The web stage's load: a big ledger seeded in bulk, a real `triage web` process, its pages,
API and live streams timed over HTTP (what `python -m bench.web` and `python -m bench` run)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from datetime import timedelta
from pathlib import Path

import httpx

from bench.latency import percentiles
from ledger.accounts import add_token, add_user
from ledger.database import create_ledger_engine, upgrade_schema
from ledger.statements import results, scans, studies, urgent_cases
from schemas.tables import utcnow
from testkit.services import free_port, wait_until
from web.passwords import generate_token, hash_password, token_digest

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 5_000
PASSWORD = "bench web password"
STUDY_UID = "1.2.826.0.1.3680043.10.1."  # + the seeded study's index
IDLE_S = 5.0  # the server's CPU with the streams open and no requests, over this long
STREAM_DEADLINE_S = 30.0


def _rows(index: int, urgent: bool, now) -> tuple[dict, dict, dict]:  # noqa: ANN001
    study_id, scan_id = str(uuid.uuid4()), str(uuid.uuid4())
    p2 = 0.5 + (index % 500) / 1000 if urgent else (index % 400) / 1000
    at = now - timedelta(seconds=index)
    study = {
        "id": study_id, "study_uid": f"{STUDY_UID}{index}", "accession": f"A{index}",
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(client: httpx.Client, path: str, requests: int, pid: int, **kwargs) -> dict[str, float]:  # noqa: ANN003
    """Latency percentiles of `requests` GETs of `path`, and the server's CPU ms per request
    (what the machine's load cannot inflate)."""
    spent, cpu = [], cpu_seconds(pid)
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path, **kwargs)
        spent.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    server_cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / requests
    return {**percentiles(spent), "server_cpu_ms": round(server_cpu_ms, 1)}


def measure(url: str, token: str, requests: int, pid: int) -> dict[str, dict[str, float]]:
    with httpx.Client(base_url=url, timeout=60) as client:
        log_in(client)
        bearer = {"Authorization": f"Bearer {token}"}
        return {
            "worklist_page_ms": timed(client, "/", requests, pid),
            "api_worklist_ms": timed(client, "/api/v1/worklist", requests, pid, headers=bearer),
            "study_page_ms": timed(client, f"/studies/{STUDY_UID}7", requests, pid),
        }


async def _listen(url: str, token: str, heard: dict, ready: asyncio.Event, count: int) -> None:
    """One live worklist stream: counted when it says hello, its last `worklist` event kept."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=None) as client,
        client.stream("GET", "/events/worklist", headers=headers) as stream,
    ):
        mine = len(heard["last_event"])
        heard["last_event"].append(0.0)
        async for line in stream.aiter_lines():
            if line == "event: hello":
                heard["open"] += 1
                if heard["open"] == count:
                    ready.set()
            elif line == "event: worklist":
                heard["last_event"][mine] = time.monotonic()


async def with_streams(url: str, token: str, streams: int, requests: int, pid: int) -> dict:
    """The measurements with `streams` live worklist streams open, then an acknowledgement
    and how many of them heard of it within STREAM_DEADLINE_S."""
    heard, ready = {"open": 0, "last_event": []}, asyncio.Event()
    listeners = [
        asyncio.create_task(_listen(url, token, heard, ready, streams)) for _ in range(streams)
    ]
    await asyncio.wait_for(ready.wait(), 120)
    idle_cpu = cpu_seconds(pid)
    await asyncio.sleep(IDLE_S)
    idle_cpu_percent = (cpu_seconds(pid) - idle_cpu) * 100 / IDLE_S
    measured = await asyncio.to_thread(measure, url, token, requests, pid)
    headers = {"Authorization": f"Bearer {token}"}
    acked_at = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        answer = await client.post(f"/api/v1/studies/{STUDY_UID}3/ack", headers=headers)
        answer.raise_for_status()
    deadline = acked_at + STREAM_DEADLINE_S
    while time.monotonic() < deadline and min(heard["last_event"]) < acked_at:
        await asyncio.sleep(0.05)
    for listener in listeners:
        listener.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    told = sum(moment >= acked_at for moment in heard["last_event"])
    return {**measured, "streams_open": heard["open"], "streams_told_of_the_ack": told,
            "server_cpu_percent_streams_idle": round(idle_cpu_percent, 1)}  # fmt: skip


@contextlib.contextmanager
def web_server(url: str, directory: Path) -> Iterator[subprocess.Popen]:
    """A real `triage web` process on `url`'s ledger, answering /healthz."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    env.update(
        TRIAGE_DATABASE_URL=url, TRIAGE_DATA_DIR=str(directory), TRIAGE_WEB_SECRET_KEY="b" * 40
    )
    log = (directory / "web.log").open("w")
    command = [sys.executable, "-m", "triage", "web", "--port", str(port)]
    server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
    server.base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{server.base_url}/healthz").status_code == 200,
            "triage web", timeout=60,
        )  # fmt: skip
        yield server
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def run_web(
    url: str, directory: Path, options: argparse.Namespace, feeding: ContextManager | None = None
) -> dict:
    """Seed `url`'s ledger, then measure without and with streams (inside `feeding`, when
    given: workers classifying meanwhile)."""
    engine = create_ledger_engine(url)
    upgrade_schema(engine)
    started = time.perf_counter()
    token = seed(engine, options.studies, options.urgent)
    seeded_s = time.perf_counter() - started
    with web_server(url, directory) as server:
        quiet = measure(server.base_url, token, options.requests, server.pid)
        with feeding or contextlib.nullcontext() as fed:
            busy = asyncio.run(
                with_streams(server.base_url, token, options.streams, options.requests, server.pid)
            )
    label = f"with_{options.streams}_streams" + ("_and_workers" if feeding else "")
    report = {"studies": options.studies, "open_urgent": options.urgent, "seed_s": round(seeded_s, 1),
              "backend": engine.dialect.name, "requests": options.requests,
              "load_average": [round(value, 2) for value in os.getloadavg()],
              "no_streams": quiet, label: busy}  # fmt: skip
    if fed is not None:
        report["workers"] = fed
    engine.dispose()
    return report
