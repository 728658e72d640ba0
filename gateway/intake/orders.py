"""`triage orders`: the RIS's HL7 order feed over MLLP, every message answered with an ACK.

One thread per connection (at most `hl7_max_connections`; one more is closed at once and the
RIS retries), many messages per connection, each framed 0x0B + message + 0x1C 0x0D
(`gateway.outbox.mllp`'s constants) and answered before the next is read:

    AA  recorded (its orders are in the ledger and applied to their studies), or a message
        whose MSH-10 was recorded before: nothing is added
    AE  the ledger could not take it (database down, ...): send it again
    AR  malformed or not an order message (reason in MSA-3 and ERR); a frame over
        `hl7_max_message_bytes`, a frame without its end (a new frame begins first, or none
        comes within `hl7_read_timeout_seconds`) or bytes outside a frame are answered AR and
        the connection is closed without reading on

A connection silent for `hl7_read_timeout_seconds` between messages is closed. A fault in
one message or connection never stops the listener. Logs name messages by our own running
number, never by an id, accession or patient id from the message.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.broker.publish import publish_jobs
from gateway.intake.order_messages import (
    SEGMENT_SEQUENCE,
    Header,
    OrderMessageError,
    build_ack,
    parse_order_message,
    read_header,
)
from gateway.outbox.mllp import ENCODING, END, START, frame
from ledger import orders as order_ledger
from ledger import scans as scan_ledger
from schemas.errors import describe
from schemas.messages import Priority
from schemas.settings import Settings

log = logging.getLogger(__name__)
Publish = Callable[[Sequence[str], Priority, Settings], int]


class FrameRefused(Exception):
    """A frame we will not read on: answered AR with this reason, then the connection closes."""


@dataclass
class Counts:
    """What the listener answered since it started (for operators and tests)."""

    AA: int = 0  # noqa: N815 - the HL7 codes
    AE: int = 0  # noqa: N815
    AR: int = 0  # noqa: N815
    repeated: int = 0
    refused_connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> int:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)
            return self.AA + self.AE + self.AR


@dataclass
class OrderIntake:
    """What handling one message needs: the ledger, the settings, how to publish."""

    engine: Engine
    settings: Settings
    publish: Publish = publish_jobs
    counts: Counts = field(default_factory=Counts)

    def handle(self, payload: bytes) -> str:
        """The ACK of one framed message (never raises)."""
        text = _decode(payload)
        header = read_header(text)
        try:
            message = parse_order_message(text)
        except OrderMessageError as error:
            return self.answer(header, "AR", error=error)
        try:
            new = order_ledger.record_message(
                self.engine, header.control_id, message.message_type, message.orders
            )
            # applied again for a repeat too: a message answered AE after it was recorded
            # comes back as a repeat, and applying is idempotent
            applied = order_ledger.apply_to_studies(
                self.engine, [order.accession for order in message.orders]
            )
        except SQLAlchemyError as error:
            log.warning("order message not stored (%s): answered AE", describe(error))
            return self.answer(header, "AE", note="could not store the order now; send again")
        self._publish(applied)
        if not new:
            self.counts.add("repeated")
        return self.answer(header, "AA")

    def _publish(self, applied: order_ledger.Applied) -> None:
        """Queued slices a STAT order moved go on the stat queue now; if the broker is down,
        the reconciler re-sends them by their (stat) priority in the ledger."""
        for priority, scan_ids in applied.to_publish.items():
            if not scan_ids:
                continue
            try:
                self.publish(scan_ids, priority, self.settings)
                scan_ledger.mark_published(self.engine, scan_ids)
            except Exception as error:  # noqa: BLE001 - the order is stored; the reconciler re-sends
                log.warning(
                    "%d re-prioritised slices not published (%s)", len(scan_ids), describe(error)
                )

    def answer(
        self, header: Header, code: str, error: OrderMessageError | None = None, note: str = ""
    ) -> str:
        """Count and log an answer (our number, the code, our reason) and build its ACK."""
        number = self.counts.add(code)
        log.info("order message %d: %s%s", number, code, f" ({error.reason})" if error else "")
        return build_ack(header, code, error=error, note=note)


def _decode(payload: bytes) -> str:
    try:
        return payload.decode(ENCODING)
    except UnicodeDecodeError:
        return payload.decode("latin-1")


class FrameReader:
    """Framed messages from one connection, with a size limit and read deadlines."""

    def __init__(self, connection: socket.socket, max_bytes: int, timeout: float) -> None:
        self.connection = connection
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.buffer = bytearray()

    def next_frame(self) -> bytes | None:
        """The next message; None when the peer closed or went silent between messages.
        FrameRefused for a frame we will not read on."""
        idle_since = time.monotonic()  # bytes between frames do not extend the idle deadline
        started: float | None = None
        while True:
            begin = self.buffer.find(START)
            if begin < 0 and self.buffer.strip():
                raise FrameRefused("bytes outside an MLLP frame")
            if begin < 0:
                self.buffer.clear()  # line breaks between frames
            if begin > 0 and self.buffer[:begin].strip():
                raise FrameRefused("bytes outside an MLLP frame")
            if begin >= 0:
                started = started or time.monotonic()
                message = self._complete(begin)
                if message is not None:
                    return message
            if not self._receive(idle_since, started):
                return None

    def _complete(self, begin: int) -> bytes | None:
        """The framed message starting at `begin` if its end is in the buffer."""
        end = self.buffer.find(END, begin)
        restart = self.buffer.find(START, begin + 1)
        if restart >= 0 and (end < 0 or restart < end):
            raise FrameRefused("frame without its end (a new frame began first)")
        if end < 0:
            if len(self.buffer) - begin - 1 > self.max_bytes:
                raise FrameRefused(f"message over {self.max_bytes} bytes")
            return None
        if end - begin - 1 > self.max_bytes:
            raise FrameRefused(f"message over {self.max_bytes} bytes")
        message = bytes(self.buffer[begin + 1 : end])
        del self.buffer[: end + len(END)]
        return message

    def partial_header(self) -> Header:
        """The MSH of a frame refused part-way (to echo its MSH-10 when it got that far)."""
        begin = self.buffer.find(START)
        return read_header(
            _decode(bytes(self.buffer[begin + 1 : begin + 1025])) if begin >= 0 else ""
        )

    def _receive(self, idle_since: float, started: float | None) -> bool:
        """Read more; False when the peer closed or sent no frame in time between messages."""
        wait = (started or idle_since) + self.timeout - time.monotonic()
        if wait <= 0 and started is None:
            return False
        if wait <= 0:
            raise FrameRefused(f"frame not ended within {self.timeout:g} s")
        self.connection.settimeout(wait)
        try:
            chunk = self.connection.recv(65536)
        except TimeoutError:
            if started is None:
                return False
            raise FrameRefused(f"frame not ended within {self.timeout:g} s") from None
        except OSError:
            return False
        if not chunk:
            if started is not None:
                log.info("connection closed in the middle of a frame")
            return False
        self.buffer.extend(chunk)
        return True


def serve_connection(connection: socket.socket, intake: OrderIntake) -> None:
    """Answer every message of one connection until it closes, idles or sends a bad frame."""
    settings = intake.settings
    reader = FrameReader(
        connection, settings.hl7_max_message_bytes, settings.hl7_read_timeout_seconds
    )
    try:
        while True:
            try:
                payload = reader.next_frame()
            except FrameRefused as refused:
                error = OrderMessageError(SEGMENT_SEQUENCE, str(refused))
                ack = intake.answer(reader.partial_header(), "AR", error)
                connection.settimeout(settings.hl7_read_timeout_seconds)
                connection.sendall(frame(ack))
                return
            if payload is None:
                return
            connection.settimeout(settings.hl7_read_timeout_seconds)
            connection.sendall(frame(intake.handle(payload)))
    except OSError as error:
        log.info("order connection ended (%s)", type(error).__name__)
    except Exception:  # one connection's fault never stops the listener
        log.exception("order connection failed")


class _Server(socketserver.ThreadingTCPServer):
    """One thread per connection, at most `slots` at once; the rest are closed at once."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], intake: OrderIntake) -> None:
        self.intake = intake
        self.slots = threading.BoundedSemaphore(intake.settings.hl7_max_connections)
        super().__init__(address, socketserver.BaseRequestHandler)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001
        if not self.slots.acquire(blocking=False):
            self.intake.counts.add("refused_connections")
            log.warning(
                "order connection refused: %d open", self.intake.settings.hl7_max_connections
            )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            serve_connection(request, self.intake)
        finally:
            self.shutdown_request(request)
            self.slots.release()


@dataclass
class OrdersListener:
    """A running listener: its port, what it answered, and how to stop it."""

    server: _Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def counts(self) -> Counts:
        return self.server.intake.counts

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_listener(intake: OrderIntake, host: str, port: int) -> OrdersListener:
    """Listen on host:port (0: a free port) in a background thread."""
    server = _Server((host, port), intake)
    thread = threading.Thread(target=server.serve_forever, name="hl7-orders", daemon=True)
    thread.start()
    return OrdersListener(server, thread)
