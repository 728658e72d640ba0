"""HL7 v2 order messages from the RIS (ORM^O01, OMI^O23) parsed with hl7apy, and their ACKs.

What we read from each order (an ORC and the TQ1 / OBR / IPC segments after it, up to the next
ORC):

    ORC-1        order control: NW new, XO changed, CA / OC cancelled (others are refused)
    accession    IPC-1 (OMI), else OBR-18 (the IHE Radiology placer field 1), else the filler
                 order number (ORC-3 / OBR-3), else the placer order number (ORC-2 / OBR-2)
    ORC-2, ORC-3 placer and filler order numbers (OBR-2 / OBR-3 when ORC leaves them empty)
    priority     TQ1-9, else ORC-7.6, else OBR-27.6: S stat, A ASAP, R routine (as received)
    OBR-4        the requested procedure, as received
    PID-3        the patient id (the first identifier's first component)
    ORC-16       why an order was cancelled, when the RIS says

A message we cannot use raises `OrderMessageError` with an HL7 table 0357 error code and a
reason in our own words (never a value from the message), which the ACK carries in MSA-3 and
ERR. `build_ack` writes the ACK: MSA-1 AA, AE (we could not store it: send it again) or AR
(malformed: sending it again will not help), MSA-2 = the message's MSH-10.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from hl7apy.core import Message
from hl7apy.parser import parse_message

from gateway.outbox.hl7 import escape
from ledger.orders import ReceivedOrder

ORDER_TYPES = {("ORM", "O01"), ("OMI", "O23")}
ONLY_ORDERS = "only ORM (event O01) and OMI (event O23) order messages are accepted"
ORDER_CONTROLS = ("NW", "XO", "CA", "OC")
ACK_VERSION = "2.5"
# HL7 table 0357 (message error condition codes) we answer with
SEGMENT_SEQUENCE, REQUIRED_FIELD, TABLE_VALUE = "100", "101", "103"
UNSUPPORTED_TYPE, UNSUPPORTED_EVENT, INTERNAL = "200", "201", "207"
ERROR_NAMES = {
    SEGMENT_SEQUENCE: "Segment sequence error",
    REQUIRED_FIELD: "Required field missing",
    TABLE_VALUE: "Table value not found",
    UNSUPPORTED_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT: "Unsupported event code",
    INTERNAL: "Application internal error",
}
ESCAPES = {"\\F\\": "|", "\\S\\": "^", "\\T\\": "&", "\\R\\": "~", "\\E\\": "\\"}


class OrderMessageError(ValueError):
    """A message we refuse (AR): `code` from HL7 table 0357, `reason` in our own words."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Header:
    """What an ACK needs from a message's MSH, read without a parser (also for a malformed
    message): MSH-3/4 sender, MSH-9 type, MSH-10 control id, MSH-11 processing id."""

    sending_application: str = ""
    sending_facility: str = ""
    message_type: str = ""
    control_id: str = ""
    processing_id: str = "P"


@dataclass(frozen=True)
class OrderMessage:
    """A parsed order message: its header and its orders."""

    header: Header
    message_type: str  # ORM^O01 or OMI^O23
    orders: list[ReceivedOrder]


def read_header(text: str) -> Header:
    """The MSH fields an ACK echoes; empty ones where the message has none."""
    if not text.startswith("MSH") or len(text) < 8:
        return Header()
    fields = text.replace("\n", "\r").split("\r", 1)[0].split(text[3])
    field = [_unescape(value) for value in fields] + [""] * 12
    return Header(field[2], field[3], field[8], field[9][:199], field[10] or "P")


def parse_order_message(text: str) -> OrderMessage:
    """The orders of an ORM^O01 or OMI^O23; OrderMessageError when it is not one we can use."""
    header = read_header(text)
    if not text.startswith("MSH"):
        raise OrderMessageError(SEGMENT_SEQUENCE, "not an HL7 v2 message (no MSH segment first)")
    if not header.control_id:
        raise OrderMessageError(REQUIRED_FIELD, "MSH-10 (message control id) is empty")
    kind = tuple((header.message_type.split(text[4]) + ["", ""])[:2]) if len(text) > 4 else ()
    if kind[0] not in {name for name, _ in ORDER_TYPES}:
        raise OrderMessageError(UNSUPPORTED_TYPE, ONLY_ORDERS)
    if kind not in ORDER_TYPES:
        raise OrderMessageError(UNSUPPORTED_EVENT, ONLY_ORDERS)
    parsed = _parse(text)
    segments = list(parsed.children)
    orders = [
        _read_order(number, segment_group, parsed)
        for number, segment_group in enumerate(_order_groups(segments), 1)
    ]
    if not orders:
        raise OrderMessageError(SEGMENT_SEQUENCE, "the message holds no ORC segment")
    return OrderMessage(header, "^".join(kind), orders)


def _parse(text: str) -> Message:
    """hl7apy's reading of the message (a version it does not know is read as 2.5)."""
    message = text.replace("\n", "\r").strip("\r")
    try:
        return parse_message(message, find_groups=False)
    except Exception as error:  # noqa: BLE001 - hl7apy raises many types for bad input
        first = error
    try:
        return parse_message(_as_version(message, ACK_VERSION), find_groups=False)
    except Exception:  # noqa: BLE001
        reason = f"HL7 structure not readable ({type(first).__name__})"
        raise OrderMessageError(SEGMENT_SEQUENCE, reason) from None


def _as_version(message: str, version: str) -> str:
    """The message with MSH-12 replaced (what we read is the same across 2.3 - 2.8)."""
    header, _, rest = message.partition("\r")
    fields = header.split(header[3])
    if len(fields) < 12:
        raise ValueError("no MSH-12")
    fields[11] = version
    return header[3].join(fields) + ("\r" + rest if rest else "")


def _order_groups(segments: list) -> list[list]:
    """Each ORC with the segments after it, up to the next ORC."""
    groups: list[list] = []
    for segment in segments:
        if segment.name == "ORC":
            groups.append([segment])
        elif groups and segment.name in ("TQ1", "OBR", "IPC"):
            groups[-1].append(segment)
    return groups


def _read_order(number: int, group: list, parsed: Message) -> ReceivedOrder:
    orc, *details = group
    found = {segment.name: segment for segment in reversed(details)}  # the first of each
    obr, tq1, ipc = found.get("OBR"), found.get("TQ1"), found.get("IPC")
    control = _value(orc, "orc_1").upper()
    if control not in ORDER_CONTROLS:
        reason = f"order {number}: ORC-1 order control must be NW, XO, CA or OC"
        raise OrderMessageError(TABLE_VALUE, reason)
    placer = _value(orc, "orc_2") or _value(obr, "obr_2")
    filler = _value(orc, "orc_3") or _value(obr, "obr_3")
    accession = _value(ipc, "ipc_1") or _value(obr, "obr_18") or filler or placer
    if not accession:
        reason = f"order {number}: no accession (IPC-1, OBR-18, filler or placer order number)"
        raise OrderMessageError(REQUIRED_FIELD, reason)
    priority = _value(tq1, "tq1_9") or _value(orc, "orc_7", component=6) or _value(obr, "obr_27", 6)
    cancel = _value(orc, "orc_16", component=2) or _value(orc, "orc_16")
    pids = parsed.children.get("PID") or []
    return ReceivedOrder(
        order_number=number,
        order_control=control,
        accession=accession[:128],
        placer_order_number=(placer or None) and placer[:128],
        filler_order_number=(filler or None) and filler[:128],
        patient_id=(_value(pids[0], "pid_3") if pids else "")[:128] or None,
        requested_procedure=_raw(obr, "obr_4")[:250] or None,
        priority_code=priority[:16] or None,
        cancel_reason=cancel or None,
    )


def _raw(segment, name: str) -> str:  # noqa: ANN001 - an hl7apy Segment or None
    """A field as received (ER7, first repetition), '' when absent."""
    if segment is None:
        return ""
    try:
        return getattr(segment, name).value or ""
    except Exception:  # noqa: BLE001 - hl7apy: a field this version does not define
        return ""


def _value(segment, name: str, component: int = 1) -> str:  # noqa: ANN001
    """One component (1-based, first subcomponent) of a field, unescaped and stripped."""
    parts = _raw(segment, name).split("^")
    value = parts[component - 1] if len(parts) >= component else ""
    return _unescape(value.split("&")[0]).strip()


def _unescape(value: str) -> str:
    """Undo HL7's escape sequences for the default delimiters."""
    for sequence, character in ESCAPES.items():
        value = value.replace(sequence, character)
    return value


def build_ack(
    header: Header, code: str, error: OrderMessageError | None = None, note: str = ""
) -> str:
    """The ACK of a message: MSA-1 `code` (AA, AE, AR), MSA-2 its MSH-10, MSA-3 and ERR the
    reason (`error`, or `note` for an AE)."""
    kind = header.message_type.split("^")
    trigger = kind[1] if len(kind) > 1 and kind[1] else "O01"
    ack = Message("ACK", version=ACK_VERSION)
    ack.msh.msh_3 = "TRIAGE"
    ack.msh.msh_5 = escape(header.sending_application)
    ack.msh.msh_6 = escape(header.sending_facility)
    ack.msh.msh_7 = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    ack.msh.msh_9 = f"ACK^{escape(trigger)[:3]}^ACK"
    ack.msh.msh_10 = uuid.uuid4().hex[:20].upper()
    ack.msh.msh_11 = escape(header.processing_id)[:3] or "P"
    ack.msh.msh_12 = ACK_VERSION
    ack.msa.msa_1 = code
    ack.msa.msa_2 = escape(header.control_id)
    reason = error.reason if error is not None else note
    if reason:
        ack.msa.msa_3 = escape(reason)[:80]
        err = ack.add_segment("ERR")
        error_code = error.code if error is not None else INTERNAL
        err.err_3 = f"{error_code}^{ERROR_NAMES[error_code]}^HL70357"
        err.err_4 = "E"
        err.err_8 = escape(reason)
    return ack.to_er7()
