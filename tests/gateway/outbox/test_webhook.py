"""The webhook channel against real local servers: redirects refused, a malformed status line,
a blackholed endpoint; every failure is False (a retry of the outbox), never an exception."""

from __future__ import annotations

import socket
import time

from gateway.outbox.webhook import notify
from tests.gateway.outbox.webhook_peers import Handler

DEADLINE_S = 0.6
MARGIN_S = 1.0


def timed(call):  # noqa: ANN001, ANN201
    began = time.monotonic()
    value = call()
    return value, time.monotonic() - began


def test_a_2xx_is_delivered_and_redirects_are_refused(http_url: str) -> None:
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
    sent, seconds = timed(lambda: notify(blackhole_url, "s5", DEADLINE_S, study_id="st"))
    assert sent is False and seconds < DEADLINE_S + MARGIN_S
