"""Webhook endpoints on loopback: one that records each POST and answers by its path, one that
answers a malformed status line, one that takes connections and never answers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testkit.peers import serving


class Handler(BaseHTTPRequestHandler):
    """/ok 204, /error 500, /redirect 307 to /ok, anything else 404; `hits` lists the paths
    posted to, `bodies` the JSON bodies."""

    hits: list[str] = []
    bodies: list[object] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Handler.hits.append(self.path)
        Handler.bodies.append(json.loads(body) if body else None)
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "/ok")
        else:
            self.send_response({"/ok": 204, "/error": 500}.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_endpoint() -> Iterator[str]:
    """The recording server's base URL; `Handler.hits` and `Handler.bodies` start empty."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    Handler.hits, Handler.bodies = [], []
    with serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


@contextmanager
def bad_status_endpoint() -> Iterator[str]:
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
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        listener.close()


@contextmanager
def blackhole_endpoint() -> Iterator[str]:
    """Connections are taken into the backlog and never answered."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        listener.close()
