"""The webhook against real local servers: redirects refused, a malformed status line, a
blackholed endpoint; every failure is False (a retry of the outbox), and paging, the urgent
worker's log line, never waits for it."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.outbox.webhook import notify
from ledger import reads, worklist
from ledger import scans as ledger
from ledger.database import create_ledger_engine, upgrade_schema
from schemas.messages import Escalation
from schemas.settings import get_settings
from worker.paging import page_clinicians

DEADLINE_S = 0.6
MARGIN_S = 1.0


class Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Handler.hits.append(self.path)
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "/ok")
        elif self.path == "/slow":
            time.sleep(DEADLINE_S * 4)
            self.send_response(200)
        else:
            self.send_response({"/ok": 204, "/error": 500}.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    Handler.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def bad_status_url() -> Iterator[str]:
    """A raw socket server that answers every request with a malformed status line."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"NOT-HTTP garbage\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    listener.close()


@pytest.fixture
def blackhole_url() -> Iterator[str]:
    """Connections are taken into the backlog and never answered."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    listener.close()


def timed(call):  # noqa: ANN001, ANN201
    began = time.monotonic()
    value = call()
    return value, time.monotonic() - began


def test_a_2xx_is_a_page_and_redirects_are_refused(http_url: str) -> None:
    assert notify(f"{http_url}/ok", "s1", DEADLINE_S) is True
    assert notify(f"{http_url}/redirect", "s2", DEADLINE_S) is False
    assert notify(f"{http_url}/error", "s3", DEADLINE_S) is False
    assert Handler.hits == ["/ok", "/redirect", "/error"], "the redirect was not followed"


def test_every_failure_is_false_never_an_exception(bad_status_url: str, blackhole_url: str) -> None:
    assert notify(bad_status_url, "s1", DEADLINE_S) is False
    with socket.create_server(("127.0.0.1", 0)) as closed:
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    assert notify(refused, "s2", DEADLINE_S) is False
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "not a url", "http://[::1"):
        assert notify(url, "s3", DEADLINE_S) is False
    sent, seconds = timed(lambda: notify(blackhole_url, "s4", DEADLINE_S))
    assert sent is False and seconds < DEADLINE_S + MARGIN_S


def paging_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, count: int):  # noqa: ANN201
    """`count` urgent studies of one scan each on the worklist; the webhook set to `url`."""
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'pages.db'}")
    upgrade_schema(engine)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    ledger.add_scans(engine, [ledger.NewScan(i, bytes(4096), None, None) for i in ids], "routine")
    when = ledger.utcnow()
    escalations = [
        Escalation(
            scan_id=i,
            study_id=reads.history(engine, i)["study_id"],  # each scan: a study of its own
            p2=0.9,
            model_version="v",
            classified_at=when,
        )
        for i in ids
    ]
    worklist.add_urgent_cases(engine, escalations)
    monkeypatch.setenv("TRIAGE_DATABASE_URL", str(engine.url))
    monkeypatch.setenv("TRIAGE_NOTIFY_URL", url)
    get_settings.cache_clear()
    return engine, ids


def test_a_blackholed_webhook_never_delays_the_escalation_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blackhole_url: str
) -> None:
    """Paging is the log line and its record; the webhook is the outbox's, not sent here."""
    engine, ids = paging_setup(tmp_path, monkeypatch, blackhole_url, count=20)
    paged, seconds = timed(lambda: page_clinicians(get_settings(), ids))
    assert paged == ids and seconds < 0.5
    assert all(reads.history(engine, i)["notified_at"] is not None for i in ids)
    engine.dispose()


def test_the_outbox_posts_our_ids_and_a_stuck_endpoint_is_a_retry_within_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_url: str, blackhole_url: str
) -> None:
    from gateway.outbox import sending as outbox
    from gateway.outbox.report import DeliveryError
    from gateway.outbox.routing import routing

    facts = {"id": "study-1", "top_scan_id": "scan-1"}
    monkeypatch.setenv("TRIAGE_NOTIFY_URL", f"{http_url}/ok")
    get_settings.cache_clear()
    assert routing(get_settings()).channels(urgent=True) == ("webhook",)
    assert routing(get_settings()).channels(urgent=False) == ()
    outbox._send_webhook(facts, get_settings())  # delivered: no error
    assert Handler.hits == ["/ok"]
    for url in (blackhole_url, f"{http_url}/redirect", f"{http_url}/error"):
        monkeypatch.setenv("TRIAGE_NOTIFY_URL", url)
        get_settings.cache_clear()
        with pytest.raises(DeliveryError) as error:
            _, seconds = timed(lambda: outbox._send_webhook(facts, get_settings()))
        assert error.value.retryable
    sent, seconds = timed(lambda: notify(blackhole_url, "s", DEADLINE_S, study_id="st"))
    assert sent is False and seconds < DEADLINE_S + MARGIN_S
