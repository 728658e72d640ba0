"""One deadline for the whole exchange: peers that answer a byte at a time (each byte within
any per-read timeout) against the real senders, over real sockets."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from gateway.outbox.cstore import send_cstore
from gateway.outbox.dicom_sr import build_sr
from gateway.outbox.fhir import build_fhir, post_fhir
from gateway.outbox.mllp import frame, send_mllp
from gateway.outbox.report import DeliveryError, StudyReport
from gateway.outbox.sending import SEND_TIMEOUT_S
from gateway.outbox.webhook import notify
from ledger.deliveries import CLAIM_LEASE_S
from schemas.queues import CELERY_CONFIG, DELIVER_TASK, DELIVER_TIME_LIMIT_S
from tests.gateway.outbox.conftest import wait_until

HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\n\r\n{}"
ORU = "MSH|^~\\&|TRIAGE|HOSP|RIS|HOSP|20261202120000||ORU^R01|CTRL-1|P|2.5\rPID|1||P1"
ACK = frame("MSH|^~\\&|RIS|HOSP|TRIAGE|HOSP|20261202120001||ACK|A-1|P|2.5\rMSA|AA|CTRL-1")
ASSOCIATE_AC = struct.pack(">BBL", 2, 0, 4000) + bytes(4000)  # a long answer to drip


@dataclass
class DripPeer:
    """Accepts one connection, reads what the sender sends first, then answers `answer` one
    byte every `interval` seconds; records how many it sent and whether the sender closed
    the connection before the answer was complete."""

    answer: bytes
    interval: float
    listener: socket.socket = field(default_factory=socket.socket)
    dripped: int = 0
    cut_early: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.settimeout(5)
            try:
                connection.recv(65536)
                for byte in self.answer:
                    connection.sendall(bytes([byte]))
                    self.dripped += 1
                    if _closed_within(connection, self.interval):
                        self.cut_early = True
                        break
            except OSError:
                self.cut_early = True
        self.done.set()


def _closed_within(connection: socket.socket, seconds: float) -> bool:
    """Whether the sender closed the connection (EOF) within `seconds`; waits them out in
    full, whatever else it sends meanwhile (a request body arriving after its headers must
    not speed the drip up)."""
    ends = time.monotonic() + seconds
    while (left := ends - time.monotonic()) > 0:
        connection.settimeout(left)
        try:
            if connection.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
    return False


@pytest.fixture
def peers() -> Iterator[list[DripPeer]]:
    made: list[DripPeer] = []
    yield made
    for peer in made:
        peer.listener.close()


def test_a_pacs_dripping_its_answer_is_cut_at_the_deadline(
    peers: list[DripPeer], report: StudyReport
) -> None:
    peer = DripPeer(ASSOCIATE_AC, interval=0.1)  # 4,006 bytes: 400 s to the end
    peers.append(peer)
    with pytest.raises(DeliveryError) as failed:
        send_cstore([build_sr(report, "TRIAGE")], f"PACS@127.0.0.1:{peer.port}", "TRIAGE", 2.0)
    assert failed.value.retryable
    wait_until(peer.done.is_set, timeout=60)
    assert peer.cut_early
    assert peer.dripped < 100, f"the sender read {peer.dripped} bytes (10 s worth) before the cut"


def test_a_fhir_answer_dripped_past_the_deadline_is_not_delivered(
    peers: list[DripPeer], report: StudyReport
) -> None:
    peer = DripPeer(HTTP_OK, interval=0.2)  # a 200 OK, complete after about 16 s
    peers.append(peer)
    with pytest.raises(DeliveryError) as failed:  # never counted as delivered
        post_fhir(f"http://127.0.0.1:{peer.port}/fhir", build_fhir(report), timeout=1.5)
    assert failed.value.retryable
    wait_until(peer.done.is_set, timeout=60)
    assert peer.cut_early


def test_a_ris_dripping_its_ack_is_cut_at_the_deadline(peers: list[DripPeer]) -> None:
    peer = DripPeer(ACK, interval=0.2)  # an AA for our message, complete after about 20 s
    peers.append(peer)
    with pytest.raises(DeliveryError) as failed:  # the ORU is not counted as delivered
        send_mllp(ORU, "127.0.0.1", peer.port, timeout=1.5)
    assert failed.value.retryable
    wait_until(peer.done.is_set, timeout=60)
    assert peer.cut_early
    assert peer.dripped < 20, f"the sender read {peer.dripped} bytes (4 s worth) before the cut"


def test_the_ris_ack_the_drip_test_sends_is_accepted_when_whole(peers: list[DripPeer]) -> None:
    peer = DripPeer(ACK, interval=0.0)  # the same answer at once: the cut above is the deadline's
    peers.append(peer)
    send_mllp(ORU, "127.0.0.1", peer.port, timeout=5)
    wait_until(peer.done.is_set, timeout=60)


def test_a_webhook_dripping_its_answer_leaves_no_request_behind(peers: list[DripPeer]) -> None:
    peer = DripPeer(HTTP_OK, interval=0.2)
    peers.append(peer)
    assert notify(f"http://127.0.0.1:{peer.port}/hook", "scan-1", deadline_s=1.5) is False
    wait_until(peer.done.is_set, timeout=60)
    assert peer.cut_early  # the request's socket was shut down, its thread did not linger


def test_a_deliver_job_outlives_its_send_and_its_lease_outlives_the_job() -> None:
    limits = CELERY_CONFIG["task_annotations"][DELIVER_TASK]
    assert SEND_TIMEOUT_S < limits["soft_time_limit"] < limits["time_limit"]
    assert limits["time_limit"] == DELIVER_TIME_LIMIT_S < CLAIM_LEASE_S
