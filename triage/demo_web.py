"""The demo's web page: `triage web` on the demo's ledger, with a one-time login.

After the batch is classified, the demo makes the account DEMO_USER (role admin: worklist,
studies, performance, operations and audit; a later run gives it a new password), starts
`triage web` on 127.0.0.1 as a supervised child (worker/processes.py), waits until /healthz
answers, prints the address and the password once, and serves until Ctrl-C.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from sqlalchemy.engine import Engine

from schemas.settings import Settings
from worker.processes import WorkerExited, WorkerProcess, stop_workers

DEMO_USER = "demo"
DEMO_ROLE = "admin"
HOST = "127.0.0.1"
PREFERRED_PORT = 8080  # taken when free and no --web-port is given; else any free port
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 5.0  # uvicorn waits for open event streams (a browser tab) to close


class WebNotServing(RuntimeError):
    """The demo's web page could not start or stopped; the message says why."""


@dataclass(frozen=True)
class DemoWeb:
    """The running page: where it listens, the one-time login, its process."""

    url: str
    user: str
    password: str
    process: WorkerProcess


def demo_login(engine: Engine) -> str:
    """Make DEMO_USER (or give it a fresh password) and return the password, in clear once."""
    from ledger.accounts import add_user, set_password_hash, user
    from web.passwords import generate_password, hash_password

    password = generate_password()
    existing = user(engine, DEMO_USER)
    if existing is None:
        add_user(engine, DEMO_USER, DEMO_ROLE, hash_password(password))
    elif existing.role != DEMO_ROLE or existing.disabled:
        state = "disabled" if existing.disabled else f"role {existing.role}"
        raise WebNotServing(
            f"the ledger has a user {DEMO_USER!r} ({state}) the demo did not make; "
            "run `triage demo --no-web`, or use `triage users` and `triage web` yourself"
        )
    else:
        set_password_hash(engine, DEMO_USER, hash_password(password))
    return password


def pick_port(requested: int | None) -> int:
    """`requested` if free (else a clear error); without one PREFERRED_PORT, else a free one."""
    for port in (requested,) if requested is not None else (PREFERRED_PORT, 0):
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            return probe.getsockname()[1]
    raise WebNotServing(f"port {requested} on {HOST} is in use: pass another --web-port")


def start_web(settings: Settings, log_dir: Path, port: int, timeout: float) -> WorkerProcess:
    """`triage web` on HOST:`port` and the settings' ledger, once its /healthz answers."""
    env = dict(os.environ, TRIAGE_DATA_DIR=str(settings.resolved_data_dir))
    command = [sys.executable, "-m", "triage", "web", "--host", HOST, "--port", str(port)]
    web = WorkerProcess("web", command, env, log_dir)
    deadline = time.monotonic() + timeout
    try:
        while not _healthy(f"http://{HOST}:{port}/healthz"):
            web.check_alive()
            if time.monotonic() > deadline:
                raise WebNotServing(
                    f"the web page did not answer within {timeout:.0f} s; log: {web.log_path}"
                )
            time.sleep(POLL_SECONDS)
    except WorkerExited as error:
        stop_workers([web], STOP_GRACE_SECONDS)
        raise _not_serving(error) from None
    except BaseException:  # not ready in time, Ctrl-C, SIGTERM: never leave it running
        stop_workers([web], STOP_GRACE_SECONDS)
        raise
    return web


def _not_serving(error: WorkerExited) -> WebNotServing:
    """The supervisor's message about its child "web", said of the web page."""
    return WebNotServing(str(error).replace("worker web", "the web page"))


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def serve_demo_web(
    settings: Settings, engine: Engine, log_dir: Path, port: int | None, timeout: float,
    console: Console,
) -> None:  # fmt: skip
    """Start the page, print its address and login, and serve until Ctrl-C (or SIGTERM)."""
    password = demo_login(engine)
    chosen = pick_port(port)
    process = start_web(settings, log_dir, chosen, timeout)
    try:
        web = DemoWeb(f"http://{HOST}:{chosen}/", DEMO_USER, password, process)
        show_login(web, console)
        while True:
            web.process.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping the web page")
    except WorkerExited as error:
        raise _not_serving(error) from None
    finally:
        stop_workers([process], STOP_GRACE_SECONDS)


def show_login(web: DemoWeb, console: Console) -> None:
    console.rule("[bold]the web page[/bold]")
    console.print(f"open {web.url}", markup=False, highlight=False)
    console.print(
        f"login (shown once): user {web.user}, role {DEMO_ROLE}", markup=False, highlight=False
    )
    console.print(f"password: {web.password}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        "the worklist, studies, performance and operations of this demo's ledger; "
        "Ctrl-C stops it (`triage demo --no-web` skips it)."
    )
