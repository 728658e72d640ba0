"""The ORU names the RIS's order as received (placer and filler numbers), when there was one."""

from __future__ import annotations

from hl7apy.parser import parse_message

from gateway.outbox.hl7 import build_oru
from tests.gateway.outbox.conftest import make_report


def order_fields(message: str) -> tuple[str, ...]:
    parsed = parse_message(message.replace("\r", "\n").strip().replace("\n", "\r"))
    order = parsed.oru_r01_patient_result.oru_r01_order_observation
    return (
        order.orc.orc_2.value,
        order.orc.orc_3.value,
        order.obr.obr_2.value,
        order.obr.obr_3.value,
        order.obr.obr_18.value,
    )


def test_the_oru_names_the_order_as_received() -> None:
    report = make_report(placer_order_number="PL-9|1", filler_order_number="FI-9")
    assert order_fields(build_oru(report, "MSG-1")) == (
        "PL-9\\F\\1",
        "FI-9",
        "PL-9\\F\\1",
        "FI-9",
        "ACC-77",
    )


def test_without_an_order_the_accession_is_the_filler_number() -> None:
    assert order_fields(build_oru(make_report(), "MSG-2")) == ("", "ACC-77", "", "ACC-77", "ACC-77")
