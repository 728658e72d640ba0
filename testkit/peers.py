"""Stand-ins for hospital receivers on loopback: dcmtk's storescp as the PACS, an MLLP
listener as the RIS, a local HTTP server as the FHIR server. Used by the deliveries benchmark
(bench/deliveries.py) and the integration tests; each records what it received."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

from testkit.dcmtk import storescp

START, END = b"\x0b", b"\x1c\r"
Server = TypeVar("Server", bound=socketserver.BaseServer)


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    """`server` answering on a thread of its own until the block ends, then shut down and
    closed (for peers the tests start: an MLLP listener, an HTTP server)."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Ris(socketserver.StreamRequestHandler):
    """An MLLP listener answering AA (MSA-2 = MSH-10); with `refuse_first`, the first message
    gets AE (the sender must retry it)."""

    received: list[str] = []
    refused_once: list[str] = []
    refuse_first = True

    def handle(self) -> None:
        buffer = b""
        while chunk := self.request.recv(65536):
            buffer += chunk
            while START in buffer and END in buffer:
                frame, buffer = buffer.split(END, 1)
                self.answer(frame.split(START, 1)[1].decode())

    def answer(self, message: str) -> None:
        segments = message.replace("\n", "\r").split("\r")
        control_id = segments[0].split("|")[9]
        code = "AA"
        if Ris.refuse_first and not Ris.refused_once:
            Ris.refused_once.append(control_id)
            code = "AE"
        else:
            Ris.received.append(message)
        ack = (
            f"MSH|^~\\&|RIS||TRIAGE||20261201||ACK^R01|A{control_id}|P|2.5\rMSA|{code}|{control_id}"
        )
        self.request.sendall(START + ack.encode() + END)


class Fhir(BaseHTTPRequestHandler):
    """A FHIR server that accepts every POST (201) and keeps the bodies."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        Fhir.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def start_receivers(ports: dict[str, int], folder: Path) -> Iterator[None]:
    """storescp, the MLLP listener and the FHIR server, on the ports the settings name."""
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    ris = socketserver.ThreadingTCPServer(("127.0.0.1", ports["ris"]), Ris)
    fhir = ThreadingHTTPServer(("127.0.0.1", ports["fhir"]), Fhir)
    with serving(ris), serving(fhir), storescp(folder, ports["pacs"]):
        yield


def reset() -> None:
    """Forget what the receivers got (one run's messages only)."""
    Ris.received, Ris.refused_once, Fhir.bodies = [], [], []
