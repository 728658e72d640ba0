"""The RIS's order feed: parsing ORM^O01 / OMI^O23, and the MLLP listener over real sockets."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from gateway.intake.order_messages import OrderMessageError, parse_order_message
from gateway.intake.orders import OrderIntake, OrdersListener, start_listener
from gateway.outbox.mllp import END, START, check_ack, frame, send_mllp_many
from ledger import orders as order_ledger
from ledger.database import create_ledger_engine, upgrade_schema
from schemas.settings import Settings
from tests.gateway.intake.order_feed import err_text, exchange, msa, order_message, read_answer

MAX_BYTES = 4096


# -- parsing ---------------------------------------------------------------------------------


def test_an_orm_gives_its_order_with_accession_numbers_and_priority() -> None:
    parsed = parse_order_message(order_message("M1", "ACC1", priority="S"))
    (order,) = parsed.orders
    assert parsed.message_type == "ORM^O01" and parsed.header.control_id == "M1"
    assert (order.order_control, order.accession, order.priority_code) == ("NW", "ACC1", "S")
    assert (order.placer_order_number, order.filler_order_number) == ("PL-ACC1", "FI-ACC1")
    assert order.patient_id == "PAT-1" and order.requested_procedure == "CTCHEST^CT chest^L"


def test_tq1_priority_comes_before_orc7_and_obr27() -> None:
    text = order_message("M2", "ACC2", priority="R").replace("TQ1|1||||||||R", "TQ1|1||||||||A")
    assert parse_order_message(text).orders[0].priority_code == "A"
    no_tq1 = "\r".join(s for s in text.split("\r") if not s.startswith("TQ1"))
    assert parse_order_message(no_tq1).orders[0].priority_code == "R"


def test_an_omi_takes_its_accession_from_ipc1_and_a_cancel_its_reason() -> None:
    text = order_message("M3", "ACC3", control="CA", kind="OMI^O23^OMI_O23")
    text = text.replace("^^^^^S\r", "^^^^^S|||||||||PL^Patient left^L\r", 1)
    text += "IPC|IPC-ACC|RP1|1.2.3.4|SPS1|CT\r"
    (order,) = parse_order_message(text).orders
    assert (order.accession, order.order_control, order.cancel_reason) == (
        "IPC-ACC",
        "CA",
        "Patient left",
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("hello, not HL7", "100"),
        (order_message("", "A"), "101"),
        (order_message("M4", "A", kind="ADT^A01^ADT_A01"), "200"),
        (order_message("M5", "A", kind="ORM^O02^ORM_O02"), "201"),
        (order_message("M6", "A", control="SC"), "103"),
        ("MSH|^~\\&|RIS|HOSP|TRIAGE|HOSP|2026||ORM^O01|M7|P|2.5\rPID|1||X\r", "100"),
    ],
    ids=["not-hl7", "no-msh10", "adt", "wrong-event", "order-control", "no-orc"],
)
def test_a_message_we_cannot_use_is_refused_with_a_code(text: str, code: str) -> None:
    with pytest.raises(OrderMessageError) as refused:
        parse_order_message(text)
    assert refused.value.code == code and refused.value.reason


def test_an_order_without_any_order_number_is_refused() -> None:
    text = "MSH|^~\\&|RIS|HOSP|TRIAGE|HOSP|2026||ORM^O01|M8|P|2.5\rORC|NW\rOBR|1||||\r"
    with pytest.raises(OrderMessageError, match="no accession"):
        parse_order_message(text)


# -- the listener over real sockets ----------------------------------------------------------


@pytest.fixture
def listener(database_url: str) -> Iterator[OrdersListener]:
    engine = create_ledger_engine(database_url)
    upgrade_schema(engine)
    settings = Settings(
        database_url=database_url,
        hl7_max_message_bytes=MAX_BYTES,
        hl7_read_timeout_seconds=1.0,
        hl7_max_connections=2,
    )
    running = start_listener(OrderIntake(engine, settings), "127.0.0.1", 0)
    yield running
    running.stop()
    engine.dispose()


def stored(listener: OrdersListener) -> list[dict]:
    return order_ledger.list_orders(listener.server.intake.engine)


def closed_after_answer(connection: socket.socket) -> bool:
    connection.settimeout(5)
    return connection.recv(1) == b""


def closed_while_dribbling(connection: socket.socket, sends: int = 40) -> bool:
    """Send a line break every 0.25 s (10 s, ten read deadlines); True once the listener has
    closed the connection, False if it kept it open all along."""
    for _ in range(sends):
        readable, _, _ = select.select([connection], [], [], 0.25)
        if readable:
            try:
                if connection.recv(1) == b"":
                    return True
            except ConnectionResetError:
                return True
        try:
            connection.sendall(b"\r")
        except OSError:
            return True
    return False


def test_good_repeated_and_malformed_messages_each_get_their_answer(listener) -> None:  # noqa: ANN001
    good = order_message("MSG-1", "ACC-1")
    malformed = "MSH|^~\\&|RIS|HOSP|TRIAGE|HOSP|2026||ORM^O01|MSG-2|P|2.5\rPID|1||X\r"
    messages = [good, good, malformed, order_message("MSG-3", "ACC-2", priority="R")]
    outcomes = send_mllp_many(messages, "127.0.0.1", listener.port)  # one connection
    assert outcomes[0] is None and outcomes[1] is None and outcomes[3] is None
    assert outcomes[2] is not None and not outcomes[2].retryable  # AR
    assert "no ORC" in outcomes[2].reason
    rows = stored(listener)
    assert sorted((row["accession"], row["priority"]) for row in rows) == [
        ("ACC-1", "stat"),
        ("ACC-2", "routine"),
    ]
    counts = listener.counts
    assert (counts.AA, counts.AR, counts.AE, counts.repeated) == (3, 1, 0, 1)


def test_an_ack_names_the_message_and_the_reason_for_a_refusal(listener) -> None:  # noqa: ANN001
    ack = exchange(listener.port, frame(order_message("MSG-9", "X", kind="ADT^A01^ADT_A01")))
    assert msa(ack)[:2] == ["AR", "MSG-9"]
    assert "ORM (event O01)" in err_text(ack) and "|200^Unsupported message type^HL70357|" in ack
    check_ack(exchange(listener.port, frame(order_message("MSG-10", "Y"))), "MSG-10")


def test_an_oversized_message_is_refused_and_the_connection_closed(listener) -> None:  # noqa: ANN001
    huge = order_message("BIG-1", "ACC-BIG") + "NTE|1||" + "x" * (2 * MAX_BYTES) + "\r"
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as connection:
        connection.sendall(frame(huge))
        ack = read_answer(connection)
        assert msa(ack)[:2] == ["AR", "BIG-1"] and f"over {MAX_BYTES} bytes" in err_text(ack)
        assert closed_after_answer(connection)
    assert stored(listener) == []
    check_ack(exchange(listener.port, frame(order_message("AFTER-1", "ACC-OK"))), "AFTER-1")


def test_a_frame_without_its_end_is_refused(listener) -> None:  # noqa: ANN001
    cut = START + order_message("CUT-1", "ACC-CUT").encode()[:90]
    # a new frame begins before the first ended
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as connection:
        connection.sendall(cut + frame(order_message("CUT-2", "ACC-CUT")))
        ack = read_answer(connection)
        assert msa(ack)[0] == "AR" and "without its end" in err_text(ack)
        assert closed_after_answer(connection)
    # no end comes within the read deadline
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as connection:
        connection.sendall(cut)
        ack = read_answer(connection)
        assert msa(ack)[:2] == ["AR", "CUT-1"] and "not ended within" in err_text(ack)
        assert closed_after_answer(connection)
    # bytes outside a frame
    ack = exchange(listener.port, b"GET / HTTP/1.1\r\n\r\n")
    assert msa(ack)[0] == "AR" and "outside an MLLP frame" in err_text(ack)
    assert stored(listener) == []
    check_ack(exchange(listener.port, frame(order_message("AFTER-2", "ACC-OK"))), "AFTER-2")


def test_a_peer_that_closes_mid_frame_or_lingers_never_stops_the_listener(listener) -> None:  # noqa: ANN001
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as connection:
        connection.sendall(START + b"MSH|^~\\&|RIS")
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as idle:
        assert closed_after_answer(idle)  # silent between messages: closed after the deadline
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as dribbling:
        assert closed_while_dribbling(dribbling)
    check_ack(exchange(listener.port, frame(order_message("AFTER-3", "ACC-OK"))), "AFTER-3")


def test_connections_past_the_limit_are_closed_at_once(listener) -> None:  # noqa: ANN001
    held = [socket.create_connection(("127.0.0.1", listener.port), timeout=10) for _ in range(2)]
    try:
        held[0].sendall(frame(order_message("HELD-1", "ACC-H")))  # both slots are taken once
        held[1].sendall(frame(order_message("HELD-2", "ACC-H2")))  # each has been answered
        assert msa(read_answer(held[0]))[0] == msa(read_answer(held[1]))[0] == "AA"
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as third:
            assert closed_after_answer(third)
    finally:
        for connection in held:
            connection.close()
    assert listener.counts.refused_connections == 1


def test_a_ledger_that_cannot_store_answers_ae(tmp_path) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'no-schema.db'}"  # never migrated: no orders table
    settings = Settings(database_url=url, hl7_read_timeout_seconds=1.0)
    running = start_listener(OrderIntake(create_ledger_engine(url), settings), "127.0.0.1", 0)
    try:
        ack = exchange(running.port, frame(order_message("AE-1", "ACC-AE")))
    finally:
        running.stop()
    assert msa(ack)[:2] == ["AE", "AE-1"] and "send again" in err_text(ack)
    assert END not in ack.encode()
