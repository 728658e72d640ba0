"""The demo's web page: a real `triage web` process on the demo's ledger, reached over real
HTTP, and the one-time login the demo prints."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ledger.accounts import add_user, user
from ledger.database import engine_for, upgrade_schema
from schemas.settings import get_settings
from tests.web.conftest import CSRF
from triage.demo_web import DEMO_ROLE, DEMO_USER, WebNotServing, demo_login, pick_port, start_web
from worker.processes import stop_workers

pytestmark = pytest.mark.timeout(180)
LOGIN_LINES = re.compile(r"open (http://127\.0\.0\.1:\d+/).*?password: (\S+)", re.S)


def migrated_ledger():  # noqa: ANN201 - Engine
    engine = engine_for(get_settings().resolved_database_url)
    upgrade_schema(engine)
    return engine


def log_in(client: httpx.Client, name: str, password: str) -> httpx.Response:
    """Post the login form as a browser does (with the CSRF token from the page)."""
    found = CSRF.search(client.get("/login").text)
    assert found, "no CSRF token on /login"
    return client.post(
        "/login", data={"username": name, "password": password, "csrf_token": found[1]}
    )


def check_login_works(url: str, password: str) -> None:
    """/healthz answers; the printed login opens the worklist and performance, another not."""
    assert httpx.get(f"{url}healthz", timeout=5.0).json() == {"status": "ok"}
    with httpx.Client(base_url=url, timeout=10.0) as client:
        answer = log_in(client, DEMO_USER, password)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert "<h1>Urgent worklist</h1>" in client.get("/").text
        assert "<h1>Model performance</h1>" in client.get("/performance").text
    with httpx.Client(base_url=url, timeout=10.0) as wrong:
        assert log_in(wrong, DEMO_USER, password + "x").status_code == 401
        assert wrong.get("/").headers["location"] == "/login"


def test_the_demo_login_is_made_once_then_given_a_new_password() -> None:
    engine = migrated_ledger()
    first = demo_login(engine)
    second = demo_login(engine)
    assert first != second and len(second) >= 20
    assert user(engine, DEMO_USER).role == DEMO_ROLE


def test_a_demo_user_the_demo_did_not_make_is_left_alone() -> None:
    engine = migrated_ledger()
    add_user(engine, DEMO_USER, "clinician", "hash-of-someone-else")
    with pytest.raises(WebNotServing, match="role clinician.*--no-web"):
        demo_login(engine)
    assert user(engine, DEMO_USER).password_hash == "hash-of-someone-else"


def test_a_port_in_use_is_refused_by_number() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WebNotServing, match=f"port {port} on 127.0.0.1 is in use"):
            pick_port(port)
    assert pick_port(port) == port  # free again


def test_the_demo_web_answers_and_the_demo_login_works(tmp_path: Path) -> None:
    engine = migrated_ledger()
    password = demo_login(engine)
    web = start_web(get_settings(), tmp_path / "logs", pick_port(0), timeout=90)
    try:
        check_login_works(f"http://127.0.0.1:{web.process.args[-1]}/", password)
    finally:
        stop_workers([web])
    assert web.process.returncode is not None


def test_a_web_page_that_cannot_start_is_named_with_its_log(tmp_path: Path) -> None:
    """An unmigrated ledger: `triage web` refuses it and exits; the demo says so, at once."""
    with pytest.raises(WebNotServing, match=r"the web page exited with status 2(.|\n)*triage db"):
        start_web(get_settings(), tmp_path / "logs", pick_port(0), timeout=90)


SERVE = """
import sys
from pathlib import Path
from rich.console import Console
from ledger.database import engine_for
from schemas.settings import get_settings
from triage.demo_web import serve_demo_web
settings = get_settings()
engine = engine_for(settings.resolved_database_url)
serve_demo_web(settings, engine, Path(sys.argv[1]), int(sys.argv[2]), 90, Console(width=200))
"""


def printed_login(process: subprocess.Popen, timeout: float) -> tuple[str, str, str]:
    """(address, password, all output so far) from the lines the demo prints."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    seen, deadline = "", time.monotonic() + timeout
    while (found := LOGIN_LINES.search(seen)) is None:
        assert time.monotonic() < deadline, f"no login printed within {timeout} s:\n{seen}"
        try:
            seen += lines.get(timeout=1.0)
        except queue.Empty:
            assert process.poll() is None, f"exited {process.returncode}:\n{seen}"
    return found[1], found[2], seen


def test_the_demo_prints_a_login_that_works_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    migrated_ledger()
    port = pick_port(0)
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(tmp_path / "logs"), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        url, password, output = printed_login(process, timeout=90)
        assert url == f"http://127.0.0.1:{port}/" and f"user {DEMO_USER}, role admin" in output
        check_login_works(url, password)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    with pytest.raises(httpx.ConnectError):  # the web page stopped with the demo
        httpx.get(f"{url}healthz", timeout=2.0)
