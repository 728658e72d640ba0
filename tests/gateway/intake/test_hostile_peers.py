"""Hostile peers against a real `triage receive` process, over real sockets.

Peers that connect and stay silent, send one byte, drip an association request or re-open
as soon as they are closed, each from its own loopback address, must not keep a real C-ECHO
or C-STORE out; PDUs and data sets over the limits are refused as they arrive; SIGTERM ends
the receiver whatever the peers do. The receiver's ledger is SQLite; the broker is absent
(nothing here closes a study).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.intake.receiver import CT, SUCCESS, VERIFICATION
from ledger.database import create_ledger_engine, upgrade_schema
from testkit.services import free_port, wait_until
from tests.gateway.intake.test_receiver import EXPLICIT_LE, ct_instance

pytestmark = pytest.mark.timeout(240)
REPO_ROOT = Path(__file__).resolve().parents[3]
CAP = 1 << 20  # TRIAGE_MAX_FILE_BYTES for these receivers
PEERS = 25


@dataclass
class ReceiverProcess:
    process: subprocess.Popen
    port: int
    tmp: Path

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(
            next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
        )


def start_receiver(directory: Path, **env: str) -> ReceiverProcess:
    """`python -m triage receive` on a free port, ready once it answers a C-ECHO."""
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{directory / 'ledger.db'}"
    engine = create_ledger_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    tmp = directory / "tmp"
    tmp.mkdir(exist_ok=True)
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "PYTHONPATH": str(REPO_ROOT),
        "TMPDIR": str(tmp),
        "TRIAGE_DATA_DIR": str(directory / "data"),
        "TRIAGE_DATABASE_URL": url,
        "TRIAGE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
        "TRIAGE_DICOM_MAX_ASSOCIATIONS": "2",
        "TRIAGE_DICOM_ASSOCIATION_SECONDS": "3",
        "TRIAGE_DICOM_READ_TIMEOUT_SECONDS": "3",
        "TRIAGE_MAX_FILE_BYTES": str(CAP),
        **env,
    }
    log = (directory / "receiver.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "triage", "receive", "--host", "127.0.0.1", "--port", str(port),
         "--grace", "2"],
        env=environment, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    receiver = ReceiverProcess(process, port, tmp)
    wait_until(lambda: process.poll() is None and echo(port) == SUCCESS, "receiver", 60)
    return receiver


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    running = start_receiver(tmp_path / "receiver")
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait(timeout=10)


def echo(port: int, calling: str = "SENDER") -> int | None:
    """A real C-ECHO; its status, or None when no association was made."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    association = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    if not association.is_established:
        return None
    try:
        return int(association.send_c_echo().Status)
    finally:
        association.release()


def store(port: int, dataset: object) -> int | None:
    from pynetdicom import AE

    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CT, [EXPLICIT_LE])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    association = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    if not association.is_established:
        return None
    try:
        status = association.send_c_store(dataset)
        return int(status.Status) if "Status" in status else None
    finally:
        association.release()


def associate_request(calling: str, length: int) -> bytes:
    """The first 42 bytes of an A-ASSOCIATE-RQ PDU whose length says `length`."""
    return struct.pack(
        ">BBLHH16s16s", 1, 0, length, 1, 0, b"TRIAGE".ljust(16), calling.encode().ljust(16)
    )


def connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_peer(sock: socket.socket, timeout: float = 20.0) -> bytes:
    """Read until the receiver closes the connection; what it sent first (an A-ABORT or
    A-ASSOCIATE-RJ PDU, or nothing). Fails if it is still open after `timeout`."""
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@dataclass
class HostilePeers:
    """PEERS threads, each from its own loopback address: silent, one byte, a drip of an
    association request, and re-opening as soon as closed."""

    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    connections: int = 0

    def start(self) -> HostilePeers:
        kinds = (self._silent, self._one_byte, self._drip, self._reopen)
        for number in range(PEERS):
            kind = kinds[number % len(kinds)]
            thread = threading.Thread(target=self._run, args=(kind, f"127.0.0.{number + 2}"))
            thread.start()
            self.threads.append(thread)
        wait_until(lambda: self.connections >= PEERS, "hostile peers connected", 30)
        return self

    def _run(self, kind, source: str) -> None:  # noqa: ANN001
        while not self.stop.is_set():
            try:
                with connect(self.port, source) as sock:
                    self.connections += 1
                    kind(sock)
            except OSError:
                pass
            if kind != self._reopen:
                self.stop.wait(0.5)  # the others come back too, a little later

    def _hold(self, sock: socket.socket) -> None:
        sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                if sock.recv(1) == b"":
                    return
            except TimeoutError:
                continue

    def _silent(self, sock: socket.socket) -> None:
        self._hold(sock)

    def _one_byte(self, sock: socket.socket) -> None:
        sock.sendall(b"\x01")
        self._hold(sock)

    def _drip(self, sock: socket.socket) -> None:
        for byte in associate_request("SENDER", 68):
            if self.stop.wait(0.3):
                return
            sock.sendall(bytes([byte]))
        self._hold(sock)

    def _reopen(self, sock: socket.socket) -> None:
        self._hold(sock)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def test_echo_and_store_succeed_while_hostile_peers_hold_sockets(
    receiver: ReceiverProcess,
) -> None:
    peers = HostilePeers(receiver.port).start()
    try:
        started = time.monotonic()
        assert echo(receiver.port) == SUCCESS
        echoed = time.monotonic() - started
        instance = ct_instance("1.2.826.0.1.77.21", 1, 60, size=64)
        assert store(receiver.port, instance) == SUCCESS
        stored = time.monotonic() - started - echoed
        opened = peers.connections
        wait_until(lambda: peers.connections > opened + PEERS, "hostile peers closed", 60)
    finally:
        peers.close()
    print(f"\nC-ECHO {echoed:.3f} s, C-STORE {stored:.3f} s under {PEERS} hostile peers")


def test_connections_from_one_address_are_bounded(tmp_path: Path) -> None:
    receiver = start_receiver(tmp_path / "bounded", TRIAGE_DICOM_MAX_CONNECTIONS_PER_ADDRESS="3")
    try:
        held = [connect(receiver.port, "127.0.0.60") for _ in range(3)]
        extra = connect(receiver.port, "127.0.0.60")
        assert closed_by_peer(extra, timeout=10) == b""
        held[0].setblocking(False)
        with pytest.raises(BlockingIOError):  # still open: only the one over the bound went
            held[0].recv(1)
        assert echo(receiver.port) == SUCCESS  # another address is not concerned
        for sock in [*held, extra]:
            sock.close()
    finally:
        receiver.process.kill()
        receiver.process.wait(timeout=10)


def test_a_pdu_longer_than_the_maximum_is_refused_at_its_header(receiver: ReceiverProcess) -> None:
    with connect(receiver.port, "127.0.0.70") as sock:
        sock.sendall(struct.pack(">BBL", 4, 0, 0xFFFFFFF0) + bytes(1000))
        assert closed_by_peer(sock)[:1] == b"\x07"  # an A-ABORT, then closed


def test_an_unknown_calling_ae_is_refused_before_its_request_is_read(tmp_path: Path) -> None:
    receiver = start_receiver(tmp_path / "allow", TRIAGE_DICOM_ALLOWED_AES="SENDER")
    try:
        with connect(receiver.port, "127.0.0.71") as sock:
            sock.sendall(associate_request("INTRUDER", 3_000_000))  # the rest never comes
            assert closed_by_peer(sock)[:1] == b"\x03"  # an A-ASSOCIATE-RJ, then closed
    finally:
        receiver.process.kill()
        receiver.process.wait(timeout=10)


def write_large_instance(path: Path, pixel_bytes: int) -> None:
    """A CT instance whose pixel data is `pixel_bytes` long, written without holding it."""
    from io import BytesIO

    dataset = ct_instance("1.2.826.0.1.77.22", 1, 60, size=64)
    del dataset.PixelData
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    with path.open("wb") as handle:
        handle.write(buffer.getvalue())
        handle.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes))
        chunk = bytes(1 << 20)
        for _ in range(pixel_bytes // len(chunk)):
            handle.write(chunk)


def test_a_data_set_over_the_cap_is_refused_as_it_arrives(
    receiver: ReceiverProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynetdicom import AE, _config

    path = tmp_path / "large.dcm"
    write_large_instance(path, 100 << 20)
    before = receiver.peak_rss_kib()
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # the sender streams too
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CT, [EXPLICIT_LE])
    association = ae.associate("127.0.0.1", receiver.port, ae_title="TRIAGE")
    assert association.is_established
    status = association.send_c_store(path)
    assert "Status" not in status  # nothing was acknowledged: aborted at the cap
    wait_until(lambda: not association.is_established, "association ended", 20)
    grown_mib = (receiver.peak_rss_kib() - before) / 1024
    assert grown_mib < 64, f"receiver grew by {grown_mib:.0f} MiB for a refused data set"
    wait_until(lambda: not any(receiver.tmp.iterdir()), "no data set file left", 20)
    assert echo(receiver.port) == SUCCESS


def test_sigterm_ends_the_receiver_whatever_the_peers_do(receiver: ReceiverProcess) -> None:
    peers = HostilePeers(receiver.port).start()
    try:
        started = time.monotonic()
        receiver.process.send_signal(signal.SIGTERM)
        assert receiver.process.wait(timeout=60) == 0
        print(f"\nSIGTERM to exit: {time.monotonic() - started:.2f} s (grace 2 s)")
    finally:
        peers.close()
