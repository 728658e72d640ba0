"""An MLLP client: send HL7 v2 messages to a RIS and check each acknowledgement.

Framing: 0x0B + message + 0x1C 0x0D, the answer framed the same way. A message is delivered
only when its ACK parses (hl7apy) and says MSA-1 = AA (or CA) AND MSA-2 = our MSH-10; an ACK
for another message is an error, not a delivery.

    MSA-1 AE / CE (application error)       DeliveryError(retryable=True), reason from
                                            MSA-3 or ERR-8 / ERR-7 / ERR-3
    MSA-1 AR / CR (rejected)                DeliveryError(retryable=False)
    refused, reset, timeout, no ACK, bad frame, unreadable ACK, wrong MSA-2
                                            DeliveryError(retryable=True)

`send_mllp_many` sends several messages on one connection, one at a time (each waits for its
ACK), and returns one outcome per message (None = delivered). After a transport failure the
connection is out of step, so it is closed and the rest are reported retryable, unsent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from gateway.outbox.deadline import Deadline
from gateway.outbox.report import DeliveryError

START, END = b"\x0b", b"\x1c\r"
MAX_ACK_BYTES = 1 << 20
ENCODING = "utf-8"


def control_id(message: str) -> str:
    """MSH-10 of an ER7 message (our own, so the field separator is MSH's 4th character)."""
    if not message.startswith("MSH") or len(message) < 8:
        raise ValueError("not an HL7 v2 message (no MSH segment first)")
    separator = message[3]
    fields = message.replace("\n", "\r").split("\r", 1)[0].split(separator)
    if len(fields) < 10 or not fields[9]:
        raise ValueError("the message has no MSH-10")
    return fields[9]


def frame(message: str) -> bytes:
    return START + message.encode(ENCODING) + END


def _read_frame(connection: socket.socket, buffer: bytearray, deadline: float) -> str:
    """The next framed message from the connection (bytes after it stay in `buffer`)."""
    while True:
        end = buffer.find(END)
        if end >= 0:
            start = buffer.find(START)
            if start < 0 or start > end or buffer[:start].strip():
                raise DeliveryError("bad MLLP frame in the answer", retryable=True)
            payload = bytes(buffer[start + 1 : end])
            del buffer[: end + len(END)]
            try:
                return payload.decode(ENCODING)
            except UnicodeDecodeError:
                return payload.decode("latin-1")
        if len(buffer) > MAX_ACK_BYTES:
            raise DeliveryError("answer too long for an ACK", retryable=True)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeliveryError("no ACK before the timeout", retryable=True)
        connection.settimeout(remaining)
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            raise DeliveryError("no ACK before the timeout", retryable=True) from None
        if not chunk:
            raise DeliveryError("connection closed before the ACK", retryable=True)
        buffer.extend(chunk)


def check_ack(ack: str, expected_control_id: str) -> None:
    """Raise DeliveryError unless `ack` accepts the message whose MSH-10 is given."""
    from hl7apy.parser import parse_message

    text = ack.replace("\n", "\r").strip("\r")
    try:
        try:
            parsed = parse_message(text, find_groups=False)
        except Exception:  # a version hl7apy does not know (2.9, ...): read it as 2.5
            parsed = parse_message(_as_version(text, "2.5"), find_groups=False)
        if not parsed.children.get("MSA"):
            raise ValueError("no MSA segment")
        code = (parsed.msa.msa_1.value or "").strip().upper()
        acked = (parsed.msa.msa_2.value or "").strip()
    except Exception:  # hl7apy raises many types for malformed messages
        raise DeliveryError("unreadable ACK", retryable=True) from None
    if acked != expected_control_id:
        raise DeliveryError("ACK for another message (MSA-2 differs from MSH-10)", retryable=True)
    if code in ("AA", "CA"):
        return
    detail = _error_text(parsed)
    if code in ("AR", "CR"):
        raise DeliveryError(f"rejected ({code}): {detail}", retryable=False)
    if code in ("AE", "CE"):
        raise DeliveryError(f"application error ({code}): {detail}", retryable=True)
    raise DeliveryError("ACK with an unknown MSA-1", retryable=True)


def _as_version(message: str, version: str) -> str:
    """The message with MSH-12 replaced (MSA and ERR read the same across 2.x)."""
    header, _, rest = message.partition("\r")
    fields = header.split(header[3]) if len(header) > 3 else []
    if len(fields) < 12:
        raise ValueError("no MSH-12")
    fields[11] = version
    return header[3].join(fields) + ("\r" + rest if rest else "")


def _error_text(parsed) -> str:  # noqa: ANN001 - an hl7apy Message
    """MSA-3 (text message), else the ERR segments' user message, diagnostics or error code."""
    candidates = [parsed.msa.msa_3.value]
    for err in parsed.children.get("ERR") or []:
        candidates += [err.err_8.value, err.err_7.value, err.err_3.value]
    for text in candidates:
        if text and text.strip():
            return text.strip()
    return "no reason given"


def send_mllp_many(
    messages: Sequence[str], host: str, port: int, timeout: float = 10.0
) -> list[DeliveryError | None]:
    """Send every message on one connection; one outcome per message, None = delivered.

    `timeout` per message; the whole exchange has one deadline (`timeout` x messages) at
    which the connection is shut down, whatever the peer reads or writes."""
    ids = [control_id(message) for message in messages]  # ValueError: not HL7 v2
    with Deadline(timeout * max(1, len(messages))) as whole:
        return _send_on_one_connection(messages, ids, host, port, timeout, whole)


def _send_on_one_connection(
    messages: Sequence[str],
    ids: Sequence[str],
    host: str,
    port: int,
    timeout: float,
    whole: Deadline,
) -> list[DeliveryError | None]:
    outcomes: list[DeliveryError | None] = []
    try:
        connection = whole.watch(socket.create_connection((host, port), timeout=timeout))
    except OSError as error:
        failure = DeliveryError(f"cannot connect: {type(error).__name__}", retryable=True)
        return [failure] * len(messages)
    buffer = bytearray()
    with connection:
        for index, (message, expected) in enumerate(zip(messages, ids, strict=True)):
            deadline = time.monotonic() + timeout
            try:
                connection.settimeout(timeout)
                connection.sendall(frame(message))
                ack = _read_frame(connection, buffer, deadline)
            except OSError as error:
                transport = DeliveryError(
                    f"connection failed: {type(error).__name__}", retryable=True
                )
            except DeliveryError as error:
                transport = error
            else:
                try:
                    check_ack(ack, expected)
                except DeliveryError as error:
                    outcomes.append(error)
                else:
                    outcomes.append(None)
                continue
            outcomes.append(transport)
            unsent = DeliveryError("not sent: the connection failed earlier", retryable=True)
            outcomes.extend([unsent] * (len(messages) - index - 1))
            break
    return outcomes


def send_mllp(message: str, host: str, port: int, timeout: float = 10.0) -> None:
    """Send one message on its own connection; DeliveryError unless it was accepted."""
    (outcome,) = send_mllp_many([message], host, port, timeout)
    if outcome is not None:
        raise outcome
