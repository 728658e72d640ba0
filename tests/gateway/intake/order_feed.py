"""HL7 order messages as a RIS sends them, and a raw MLLP exchange, for the order-feed tests."""

from __future__ import annotations

import socket

from gateway.outbox.mllp import END, START


def order_message(
    control_id: str,
    accession: str,
    control: str = "NW",
    priority: str = "S",
    kind: str = "ORM^O01^ORM_O01",
    patient_id: str = "PAT-1",
) -> str:
    """An ORM^O01 (or OMI^O23) with one order: ORC-7.6 and TQ1-9 carry `priority`."""
    segments = [
        f"MSH|^~\\&|RIS|HOSP|TRIAGE|HOSP|20261202120000||{kind}|{control_id}|P|2.5",
        f"PID|1||{patient_id}^^^HOSP||DOE^JANE",
        f"ORC|{control}|PL-{accession}|FI-{accession}||||^^^^^{priority}",
        f"TQ1|1||||||||{priority}",
        f"OBR|1|PL-{accession}|FI-{accession}|CTCHEST^CT chest^L"
        f"||||||||||||||{accession}|||||||||^^^^^{priority}",
    ]
    return "\r".join(segments) + "\r"


def exchange(port: int, payload: bytes, timeout: float = 10.0) -> str:
    """Send raw bytes on a fresh connection; the first framed answer ('' if none came)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(payload)
        return read_answer(connection)


def read_answer(connection: socket.socket) -> str:
    """One framed answer from the connection ('' when it closed first)."""
    buffer = bytearray()
    while END not in buffer:
        chunk = connection.recv(65536)
        if not chunk:
            return ""
        buffer.extend(chunk)
    start = buffer.index(START)
    return bytes(buffer[start + 1 : buffer.index(END)]).decode()


def msa(ack: str) -> list[str]:
    """The MSA segment's fields (MSA-1 code first)."""
    for segment in ack.split("\r"):
        if segment.startswith("MSA|"):
            return segment.split("|")[1:]
    raise AssertionError(f"no MSA in {ack!r}")


def err_text(ack: str) -> str:
    """ERR-8 (the user message) of the ACK's ERR segment, '' without one."""
    for segment in ack.split("\r"):
        if segment.startswith("ERR|"):
            fields = segment.split("|")
            return fields[8] if len(fields) > 8 else ""
    return ""
