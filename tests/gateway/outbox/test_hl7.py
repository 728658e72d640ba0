"""The ORU^R01 built with hl7apy: what was decided, in the fields a RIS reads, the same message
on a resend, and ids that cannot shift fields (sending it: tests/gateway/outbox/test_mllp.py)."""

from __future__ import annotations

from hl7apy.parser import parse_message

from gateway.outbox.hl7 import build_oru, escape
from gateway.outbox.report import StudyReport
from tests.gateway.outbox.conftest import make_report


def test_the_oru_says_what_was_decided(report: StudyReport) -> None:
    text = build_oru(report, "MSG-1")
    message = parse_message(text)  # hl7apy reads it back with its 2.5 structure
    assert message.msh.msh_9.value == "ORU^R01^ORU_R01" and message.msh.msh_10.value == "MSG-1"
    assert message.msh.msh_12.value == "2.5"
    result = message.ORU_R01_PATIENT_RESULT
    assert result.ORU_R01_PATIENT.pid.pid_3.value == report.patient_id
    order = result.ORU_R01_ORDER_OBSERVATION
    assert order.obr.obr_3.value == order.orc.orc_3.value == order.obr.obr_18.value == "ACC-77"
    assert order.obr.obr_5.value == "S" and order.obr.obr_27.value == "^^^^^S"
    obx = {o.obx.obx_3.value.split("^")[0]: o.obx for o in order.ORU_R01_OBSERVATION}
    assert obx["TRIAGE-CLASS"].obx_2.value == "CWE"
    assert obx["TRIAGE-CLASS"].obx_5.value == "2^urgent^99TRIAGE"
    assert obx["TRIAGE-CLASS"].obx_8.value == "AA"
    assert obx["P-URGENT"].obx_2.value == "NM" and float(obx["P-URGENT"].obx_5.value) == 0.873
    assert obx["MODEL"].obx_5.value == report.model_version
    assert "not a diagnosis" in obx["DISCLAIMER"].obx_5.value
    assert "not a diagnosis" in order.nte.nte_3.value
    assert text == build_oru(report, "MSG-1")  # a resend is the same message


def test_a_calm_study_is_routine_and_normal() -> None:
    calm = make_report(p2=0.02, urgent=False, predicted=0)
    order = parse_message(build_oru(calm, "MSG-2")).ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION
    assert order.obr.obr_5.value == "R"
    first = order.ORU_R01_OBSERVATION[0].obx
    assert first.obx_5.value == "0^healthy^99TRIAGE" and first.obx_8.value == "N"


def test_delimiters_in_ids_cannot_shift_fields() -> None:
    hostile = make_report(patient_id="P|1^2&3~4\\5", accession="A\rMSH|evil")
    message = parse_message(build_oru(hostile, "MSG-3"))
    assert message.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.pid.pid_3.value == escape("P|1^2&3~4\\5")
    assert [s.name for s in message.children][:2] == ["MSH", "ORU_R01_PATIENT_RESULT"]
    assert build_oru(hostile, "M").count("\rMSH") == 0
