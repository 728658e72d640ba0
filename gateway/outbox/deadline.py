"""One deadline for a whole outward exchange (connect, every write and read, the answer).

A socket timeout bounds each read only: a peer that sends a byte just before each timeout
holds the sender as long as it likes. A `Deadline` shuts down, when it passes, every socket
the exchange registered (and runs its other cuts, e.g. for pynetdicom's associations), so
whatever read or write is waiting ends at once; the sender then reports the delivery as not
made (`passed`), and the outbox tries again later.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any

from gateway.outbox.report import DeliveryError


class Deadline:
    """`with Deadline(seconds) as deadline:` ... `deadline.watch(sock)`; `passed` after."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.passed = False
        self._ends = time.monotonic() + seconds
        self._cuts: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        """Seconds left (never 0, which would make a socket non-blocking)."""
        return max(0.001, self._ends - time.monotonic())

    def watch(self, sock: socket.socket) -> socket.socket:
        """Shut `sock` down when the deadline passes (at once if it has); returns it."""
        self.on_cut(lambda: sock.shutdown(socket.SHUT_RDWR))
        return sock

    def on_cut(self, cut: Callable[[], None]) -> None:
        with self._lock:
            self._cuts.append(cut)
            passed = self.passed
        if passed:
            _quietly(cut)

    def _fire(self) -> None:
        with self._lock:
            self.passed = True
            cuts = list(self._cuts)
        for cut in cuts:
            _quietly(cut)


def _quietly(cut: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):  # a socket already closed, an association gone
        cut()


def http_handlers(deadline: Deadline) -> list[urllib.request.BaseHandler]:
    """urllib's HTTP and HTTPS handlers, with connections the deadline cuts."""
    return [_HTTPHandler(deadline), _HTTPSHandler(deadline)]


def http_opener(deadline: Deadline, *handlers: Any) -> urllib.request.OpenerDirector:  # noqa: ANN401
    """A urllib opener (no proxies) whose HTTP and HTTPS connections the deadline cuts."""
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), *http_handlers(deadline), *handlers
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        return None  # urllib then raises HTTPError with the 3xx


def http_exchange(
    request: urllib.request.Request, timeout: float, peer: str, max_answer: int
) -> tuple[int, bytes]:
    """(HTTP status, answer body up to `max_answer` bytes) of one request under one deadline
    of `timeout` for the whole exchange; redirects are not followed (a 3xx is its status).
    A peer that cannot be reached, or does not answer whole in time, raises a retryable
    DeliveryError that names `peer`."""
    with Deadline(timeout) as deadline:
        try:
            with http_opener(deadline, _NoRedirect()).open(request, timeout=timeout) as answer:
                status, body = answer.status, answer.read(max_answer)
        except urllib.error.HTTPError as error:
            with error:
                status, body = error.code, error.read(max_answer)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            if deadline.passed:
                raise DeliveryError(
                    f"no whole answer within {timeout:g} s", retryable=True
                ) from None
            cause = getattr(error, "reason", error)
            raise DeliveryError(
                f"{peer} unreachable: {type(cause).__name__}", retryable=True
            ) from None
    if deadline.passed:
        raise DeliveryError(f"no whole answer within {timeout:g} s", retryable=True)
    return status, body


def _watched(connection_class: type, deadline: Deadline) -> Callable[..., Any]:
    """A connection factory for `do_open`: the raw socket is watched as soon as it exists
    (before a TLS handshake), and the socket in use once connected."""

    def connect(*args: Any, **kwargs: Any) -> socket.socket:  # noqa: ANN401
        return deadline.watch(socket.create_connection(*args, **kwargs))

    def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:  # noqa: ANN401
        kwargs["timeout"] = min(kwargs.get("timeout") or deadline.seconds, deadline.remaining())
        connection = connection_class(host, **kwargs)
        connection._create_connection = connect  # noqa: SLF001 - http.client's own hook
        original = connection.connect

        def connect_and_watch() -> None:
            original()
            deadline.watch(connection.sock)

        connection.connect = connect_and_watch
        return connection

    return make


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self._deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            _watched(http.client.HTTPSConnection, self._deadline), req, context=self._context
        )
