"""The receiver's guard against hostile peers: deadlines, limits on the wire, a watchdog.

pynetdicom's accepted sockets have no timeout: a peer that sends one byte of a PDU header, or
drips a PDU a byte at a time, parks its reader for as long as it likes, and a PDU's length
(up to 4 GB) is read whole before anything looks at it. Here each accepted socket is wrapped
in a `GuardedSocket` that reads the PDU stream as it passes (`PduStream`) and:

- gives a connection `association_seconds` to complete its association request, and then
  `read_seconds` for each wait and for the rest of any PDU once it began;
- refuses a P-DATA PDU longer than the maximum PDU size we announced, any other PDU over
  `max_request_bytes`, and a C-STORE data set at its first byte over `max_dataset_bytes`
  (an A-ABORT, the connection closed: nothing of it is acknowledged);
- answers an A-ASSOCIATE-RJ as soon as the calling AE title (the request's first 42 bytes)
  is not on the allow-list, before the rest of the request is read or decoded.

`Guard` bounds the connections held at once (in all, and per IP address), and its watchdog
closes any connection that overstays its deadline (whatever its reader is doing) and removes
the data set file a connection cut mid-instance leaves behind.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PDU_HEADER = 6  # type, reserved, 4-byte length
PDV_HEADER = 6  # 4-byte item length, context id, message control header
ASSOCIATE_RQ, P_DATA = 0x01, 0x04
CALLING_AE = slice(20, 36)  # of an A-ASSOCIATE-RQ's body (after the PDU header)
A_ABORT = bytes.fromhex("07000000000400000200")  # source: service provider, no reason given
A_ASSOCIATE_RJ_CALLING_AE = bytes.fromhex("03000000000400010103")  # permanent; calling AE
WATCH_INTERVAL = 0.25
SLACK_SECONDS = 1.0  # past a deadline before the watchdog closes what the socket did not


@dataclass(frozen=True)
class Limits:
    """What one connection may take: time and bytes."""

    association_seconds: float
    read_seconds: float
    max_pdu_bytes: int
    max_request_bytes: int
    max_dataset_bytes: int
    allowed_aes: frozenset[str] = frozenset()  # empty: any calling AE title


class Refused(OSError):
    """A peer went over a limit: `reply` is what it is sent before the connection closes."""

    def __init__(self, reason: str, reply: bytes = A_ABORT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


@dataclass
class PduStream:
    """Follows the bytes a peer sends, PDU by PDU and (in P-DATA) item by item."""

    limits: Limits
    began: float | None = None  # when the PDU being received began (None: between PDUs)
    _header: bytearray = field(default_factory=bytearray)
    _type: int = 0
    _left: int = 0  # bytes of the current PDU's body still to come
    _request: bytearray = field(default_factory=bytearray)  # an A-ASSOCIATE-RQ's first bytes
    _item: bytearray = field(default_factory=bytearray)
    _item_left: int = 0
    _item_is_dataset: bool = False
    _dataset_bytes: int = 0  # of the C-STORE data set being received

    def feed(self, data: bytes, now: float) -> None:
        """Account for `data`, as received; raises Refused at the first byte over a limit."""
        at = 0
        while at < len(data):
            if self._left == 0:
                if not self._header:
                    self.began = now
                take = min(PDU_HEADER - len(self._header), len(data) - at)
                self._header += data[at : at + take]
                at += take
                if len(self._header) == PDU_HEADER:
                    self._start_pdu(*struct.unpack(">BxL", self._header))
                continue
            take = min(self._left, len(data) - at)
            self._body(memoryview(data)[at : at + take])
            self._left -= take
            at += take
            if self._left == 0:
                self.began = None

    def _start_pdu(self, pdu_type: int, length: int) -> None:
        self._header.clear()
        self._type, self._left = pdu_type, length
        limit = self.limits.max_pdu_bytes if pdu_type == P_DATA else self.limits.max_request_bytes
        if length > limit:
            raise Refused(f"PDU of {length} bytes, over the maximum of {limit}")
        if length == 0:
            self.began = None
        self._request.clear()

    def _body(self, chunk: memoryview) -> None:
        if self._type == ASSOCIATE_RQ and len(self._request) < CALLING_AE.stop:
            self._request += chunk[: CALLING_AE.stop - len(self._request)]
            if len(self._request) == CALLING_AE.stop:
                self._check_calling_ae(bytes(self._request[CALLING_AE]))
        elif self._type == P_DATA:
            self._items(chunk)

    def _check_calling_ae(self, title: bytes) -> None:
        allowed = self.limits.allowed_aes
        if allowed and title.decode("ascii", "replace").strip() not in allowed:
            raise Refused("calling AE title not allowed", A_ASSOCIATE_RJ_CALLING_AE)

    def _items(self, chunk: memoryview) -> None:
        """Count the data set bytes of the P-DATA items in `chunk`."""
        at = 0
        while at < len(chunk):
            if self._item_left == 0:
                take = min(PDV_HEADER - len(self._item), len(chunk) - at)
                self._item += chunk[at : at + take]
                at += take
                if len(self._item) == PDV_HEADER:
                    length, _context, control = struct.unpack(">LBB", self._item)
                    self._item.clear()
                    self._item_left = max(0, length - 2)
                    self._item_is_dataset = not control & 1
                    if not self._item_is_dataset:  # a command: a new message begins
                        self._dataset_bytes = 0
                continue
            take = min(self._item_left, len(chunk) - at)
            self._item_left -= take
            at += take
            if self._item_is_dataset:
                self._dataset_bytes += take
                if self._dataset_bytes > self.limits.max_dataset_bytes:
                    raise Refused(f"data set over the cap of {self.limits.max_dataset_bytes} bytes")


class GuardedSocket:
    """An accepted socket whose reads keep the connection's deadlines and limits; every
    other call goes to the socket itself."""

    def __init__(self, sock: socket.socket, limits: Limits, clock: Callable[[], float]) -> None:
        self._sock = sock
        self._limits = limits
        self._clock = clock
        self.accepted = clock()
        self.stream = PduStream(limits)
        self.associated: Callable[[], bool] = lambda: False  # set once the association exists
        self._was_associated = False
        self.refusal: str | None = None

    def deadline(self) -> float:
        """When the current wait must end: the association's deadline until it is
        established, then `read_seconds` from now or from the start of the current PDU."""
        self._was_associated = self._was_associated or self.associated()
        if not self._was_associated:
            return self.accepted + self._limits.association_seconds
        if self.stream.began is not None:
            return self.stream.began + self._limits.read_seconds
        return self._clock() + self._limits.read_seconds

    def recv(self, size: int) -> bytes:
        wait = self.deadline() - self._clock()
        if wait <= 0:
            self.refusal = "deadline passed"
            raise TimeoutError("deadline passed")
        self._sock.settimeout(wait)
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            self.refusal = "deadline passed"
            raise
        try:
            self.stream.feed(data, self._clock())
        except Refused as refused:
            self.refusal = refused.reason
            self._reply(refused.reply)
            raise
        return data

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the connection in TLS, the handshake within the association's deadline (the
        watchdog cuts one that overstays); ssl.SSLError or OSError when it fails."""
        self._sock = context.wrap_socket(
            self._sock, server_side=True, do_handshake_on_connect=False
        )
        self._sock.settimeout(max(self.deadline() - self._clock(), 0.001))
        try:
            self._sock.do_handshake()
        except ssl.SSLError as error:
            self.refusal = f"TLS handshake failed ({error.reason or type(error).__name__})"
            raise
        except OSError as error:
            self.refusal = f"TLS handshake failed ({type(error).__name__})"
            raise

    def send(self, data: bytes) -> int:
        self._sock.settimeout(self._limits.read_seconds)  # a peer that never reads
        return self._sock.send(data)

    def _reply(self, reply: bytes) -> None:
        with contextlib.suppress(OSError):
            self._sock.settimeout(1.0)
            self._sock.sendall(reply)

    def cut(self) -> None:
        """Close the connection under whatever reads or writes it (the watchdog's way)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - the socket's own attributes
        return getattr(self._sock, name)


@dataclass
class Connection:
    """One accepted connection: its address, guarded socket and (once made) association."""

    number: int
    address: str
    socket: GuardedSocket
    association: Any = None  # pynetdicom Association

    def ended(self) -> bool:
        thread = self.association
        return thread is not None and thread.ident is not None and not thread.is_alive()

    def overstayed(self, now: float) -> bool:
        return now > self.socket.deadline() + SLACK_SECONDS


@dataclass
class Guard:
    """The connections the receiver holds, their bounds, and the watchdog over them."""

    limits: Limits
    max_connections: int
    max_per_address: int
    clock: Callable[[], float] = time.monotonic
    _connections: list[Connection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _numbers: Counter = field(default_factory=Counter)

    def admit(self, sock: socket.socket, address: str) -> Connection | None:
        """A guarded connection for a new socket, or None (closed) when over a bound."""
        with self._lock:
            self.sweep()
            from_there = sum(1 for c in self._connections if c.address == address)
            if len(self._connections) >= self.max_connections or (
                from_there >= self.max_per_address
            ):
                log.warning("connection refused: over the connection bounds")
                _close(sock)
                return None
            self._numbers["connections"] += 1
            guarded = GuardedSocket(sock, self.limits, self.clock)
            connection = Connection(self._numbers["connections"], address, guarded)
            self._connections.append(connection)
            return connection

    def forget(self, connection: Connection) -> None:
        """Close a connection that never made an association (a failed TLS handshake)."""
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        log.warning("connection-%d closed: %s", connection.number, connection.socket.refusal)
        _close(connection.socket)

    def sweep(self) -> None:
        """Forget ended connections (removing a data set file a cut left) and cut those
        that overstayed their deadline."""
        now = self.clock()
        for connection in list(self._connections):
            if connection.ended():
                self._connections.remove(connection)
                _remove_partial_dataset(connection.association)
                if connection.socket.refusal:
                    log.warning(
                        "connection-%d closed: %s", connection.number, connection.socket.refusal
                    )
            elif connection.overstayed(now):
                connection.socket.refusal = connection.socket.refusal or "overstayed"
                connection.socket.cut()

    def watch(self, stop: threading.Event) -> threading.Thread:
        """Sweep every WATCH_INTERVAL until `stop` is set."""

        def run() -> None:
            while not stop.wait(WATCH_INTERVAL):
                with self._lock:
                    self.sweep()

        thread = threading.Thread(target=run, name="receiver-watchdog", daemon=True)
        thread.start()
        return thread

    def cut_all(self) -> int:
        """Close every connection (on stop); returns how many were open."""
        with self._lock:
            for connection in self._connections:
                connection.socket.cut()
            return len(self._connections)

    def held(self) -> int:
        with self._lock:
            self.sweep()
            return len(self._connections)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _remove_partial_dataset(association: Any) -> None:  # noqa: ANN401 - pynetdicom Association
    """The file pynetdicom was writing a data set to when the connection was cut."""
    message = getattr(getattr(association, "dimse", None), "message", None)
    handle = getattr(message, "_data_set_file", None)
    if handle is None:
        return
    handle.close()
    Path(handle.name).unlink(missing_ok=True)
