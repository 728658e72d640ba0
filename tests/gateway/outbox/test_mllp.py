"""The MLLP client against a real socket listener that answers as told: AA, AE, AR, an ACK for
another message, garbage, silence (the ORU's content: tests/gateway/outbox/test_hl7.py)."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from gateway.outbox.hl7 import build_oru
from gateway.outbox.mllp import END, START, control_id, send_mllp, send_mllp_many
from gateway.outbox.report import DeliveryError, StudyReport, hl7_message_id
from testkit.peers import serving
from testkit.services import free_port
from tests.gateway.outbox.conftest import make_report

pytestmark = pytest.mark.timeout(60)


class Ris(socketserver.ThreadingTCPServer):
    """An MLLP listener. `answers`: one per message received, in order (the last repeats):
    AA / AE / AR (MSA-2 = MSH-10), 'wrong-id' (AA for another message), 'garbage' (an
    unframed reply), 'silent' (no reply), 'close' (hang up)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.received: list[str] = []
        self.connections = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", free_port()), RisHandler)

    def next_answer(self, message: str) -> str:
        with self.lock:
            self.received.append(message)
            index = min(len(self.received), len(self.answers)) - 1
            return self.answers[index]


class RisHandler(socketserver.BaseRequestHandler):
    server: Ris

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        buffer = b""
        while chunk := self.request.recv(65536):
            buffer += chunk
            while START in buffer and END in buffer:
                framed, buffer = buffer.split(END, 1)
                message = framed.split(START, 1)[1].decode()
                if not self.answer(message):
                    return

    def answer(self, message: str) -> bool:
        how = self.server.next_answer(message)
        msh10 = control_id(message)
        if how == "silent":
            time.sleep(3)
            return False
        if how == "close":
            return False
        if how == "garbage":
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            return True
        code, acked = (how, msh10) if how != "wrong-id" else ("AA", "SOMEONE-ELSE")
        ack = (
            f"MSH|^~\\&|RIS||TRIAGE||20261201120000||ACK^R01^ACK|ACK{msh10}|P|2.5\r"
            f"MSA|{code}|{acked}|{'Unknown accession' if code == 'AE' else ''}\r"
        )
        if code == "AR":
            ack += "ERR||||E|||Message type not supported\r"
        self.request.sendall(START + ack.encode() + END)
        return True


@pytest.fixture
def ris_factory() -> Iterator:
    with ExitStack() as stack:

        def start(*answers: str) -> Ris:
            return stack.enter_context(serving(Ris(list(answers))))

        yield start


def port_of(server: Ris) -> int:
    return server.server_address[1]


@pytest.mark.parametrize(
    ("answer", "retryable", "words"),
    [("AE", True, "Unknown accession"), ("AR", False, "not supported")],
)
def test_negative_acks(ris_factory, report: StudyReport, answer, retryable, words) -> None:  # noqa: ANN001
    ris = ris_factory(answer)
    with pytest.raises(DeliveryError) as caught:
        send_mllp(build_oru(report, "MSG-4"), "127.0.0.1", port_of(ris), timeout=5)
    assert caught.value.retryable is retryable and words in caught.value.reason
    assert len(ris.received) == 1


def test_accepted(ris_factory, report: StudyReport) -> None:  # noqa: ANN001
    ris = ris_factory("AA")
    message = build_oru(report, hl7_message_id(report))
    send_mllp(message, "127.0.0.1", port_of(ris), timeout=5)
    assert ris.received == [message]
    assert control_id(ris.received[0]) == hl7_message_id(report)


@pytest.mark.parametrize("answer", ["wrong-id", "garbage", "close", "silent"])
def test_no_proper_ack_is_retryable(ris_factory, report: StudyReport, answer: str) -> None:  # noqa: ANN001
    ris = ris_factory(answer)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        send_mllp(build_oru(report, "MSG-5"), "127.0.0.1", port_of(ris), timeout=1.5)
    assert caught.value.retryable
    assert time.monotonic() - started < 5


def test_nobody_listening_is_retryable(report: StudyReport) -> None:
    with pytest.raises(DeliveryError) as caught:
        send_mllp(build_oru(report, "MSG-6"), "127.0.0.1", free_port(), timeout=2)
    assert caught.value.retryable and report.patient_id not in caught.value.reason


def test_several_messages_on_one_connection(ris_factory) -> None:  # noqa: ANN001
    ris = ris_factory("AA", "AE", "AR", "AA")
    messages = [build_oru(make_report(decision=n), f"MSG-{n}") for n in range(1, 5)]
    outcomes = send_mllp_many(messages, "127.0.0.1", port_of(ris), timeout=5)
    assert ris.connections == 1 and ris.received == messages
    assert outcomes[0] is None and outcomes[3] is None
    assert outcomes[1].retryable and not outcomes[2].retryable


def test_one_connection_broken_midway(ris_factory) -> None:  # noqa: ANN001
    ris = ris_factory("AA", "close")
    messages = [build_oru(make_report(decision=n), f"MSG-{n}") for n in range(1, 4)]
    outcomes = send_mllp_many(messages, "127.0.0.1", port_of(ris), timeout=2)
    assert outcomes[0] is None
    assert all(o is not None and o.retryable for o in outcomes[1:])
    assert len(ris.received) == 2  # the third was never sent


def test_ack_checks() -> None:
    from gateway.outbox.mllp import check_ack

    head = "MSH|^~\\&|RIS||TRIAGE||20261201||ACK|A1|P|"
    check_ack(head + "2.5\rMSA|AA|ID-1", "ID-1")
    check_ack(head + "2.9\rMSA|AA|ID-1\r", "ID-1")  # a version hl7apy lacks reads as 2.5
    check_ack(head + "2.3\nMSA|CA|ID-1\n", "ID-1")  # commit accept, newline separators
    for bad, words in (
        ("garbage", "unreadable"),
        (head + "2.5", "unreadable"),  # no MSA
        (head + "2.5\rMSA|AA|ID-2", "another message"),
        (head + "2.5\rMSA|ZZ|ID-1", "unknown"),
    ):
        with pytest.raises(DeliveryError) as caught:
            check_ack(bad, "ID-1")
        assert caught.value.retryable and words in caught.value.reason
