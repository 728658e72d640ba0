"""The decision as an HL7 v2.5 ORU^R01 for the RIS, built with hl7apy.

Segments and the fields we fill:

    MSH  MSH-3/5 sending / receiving application, MSH-7 = the decision time (so a resend is
         the same message), MSH-9 ORU^R01^ORU_R01, MSH-10 = `message_id` (our idempotency key,
         echoed by the receiver in MSA-2), MSH-11 P, MSH-12 2.5, MSH-18 UNICODE UTF-8 (the
         encoding the MLLP sender writes: a patient name may need it)
    PID  PID-3 the patient id as the study carried it (no assigning authority: we were not
         given one); PID-5 the patient name, PID-7 birth date and PID-8 sex as the study
         came with them (its patient module, `gateway.outbox.patient`; empty when none)
    ORC  ORC-1 RE (observations to follow), ORC-2 placer and ORC-3 filler order number as
         the RIS's order gave them (`triage orders`; without an order: no placer, filler =
         accession), ORC-5 CM
    OBR  OBR-2 / OBR-3 the same placer / filler order numbers, OBR-18 placer field 1 =
         accession (the IHE Radiology convention), OBR-4 our service (AITRIAGE), OBR-5 priority and OBR-27.6
         (TQ priority) "S" (stat) when urgent, else "R"; OBR-7 / OBR-22 the decision time,
         OBR-25 F, OBR-24 diagnostic service section "RAD"
    OBX1 CWE  triage class: TRIAGE-CLASS^AI triage class^99TRIAGE = <class number>^<name>^99TRIAGE,
              OBX-8 abnormal flag AA when urgent, A for class 1, N for class 0
    OBX2 NM   P-URGENT^Probability of urgent class^99TRIAGE = P(2), units 1 (UCUM)
    OBX3 ST   MODEL^Model version^99TRIAGE = the model version (also OBX-17 of every OBX)
    OBX4 TX   DISCLAIMER^Disclaimer^99TRIAGE = "... not a diagnosis"
    NTE       the same sentence as a note on the order, for receivers that show notes only

Values from the study (patient id and name, accession, model version) are escaped for ER7 (\\F\\,
\\S\\, \\T\\, \\R\\, \\E\\) before hl7apy places them, so a delimiter in an id cannot shift fields.
"""

from __future__ import annotations

from typing import Any

from hl7apy.core import Group, Message

from gateway.outbox import patient as patient_module
from gateway.outbox.report import DISCLAIMER, StudyReport

SCHEME = "99TRIAGE"
VERSION = "2.5"
ABNORMAL_FLAGS = {0: "N", 1: "A", 2: "AA"}
CHARACTER_SET = "UNICODE UTF-8"  # HL7 table 0211; gateway/outbox/mllp.py encodes UTF-8


def escape(value: str) -> str:
    """Escape HL7 ER7 delimiters (default encoding characters) and drop segment breaks."""
    value = value.replace("\\", "\\E\\")
    for character, sequence in (("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        value = value.replace(character, sequence)
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def _ts(report: StudyReport) -> str:
    return report.decided_at.strftime("%Y%m%d%H%M%S+0000")


Observation = tuple[str, str, str, str, str]  # value type, identifier, value, units, flag


def _fill_msh(
    message: Message, when: str, message_id: str, sending_app: str, receiving_app: str
) -> None:
    """MSH: applications, message time, type ORU^R01, control id, processing id, version."""
    message.msh.msh_3 = escape(sending_app)
    message.msh.msh_5 = escape(receiving_app)
    message.msh.msh_7 = when
    message.msh.msh_9 = "ORU^R01^ORU_R01"
    message.msh.msh_10 = escape(message_id)
    message.msh.msh_11 = "P"
    message.msh.msh_12 = VERSION
    message.msh.msh_18 = CHARACTER_SET


def _add_order(result: Group, report: StudyReport, when: str) -> Group:
    """ORC, OBR and the disclaimer NTE of the order group; returns the group."""
    priority = "S" if report.urgent else "R"
    accession = escape(report.accession or "")
    placer = escape(report.placer_order_number or "")
    filler = escape(report.filler_order_number or "") or accession
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.orc.orc_1 = "RE"
    if placer:
        order.orc.orc_2 = placer
    order.orc.orc_3 = filler
    order.orc.orc_5 = "CM"
    order.obr.obr_1 = "1"
    if placer:
        order.obr.obr_2 = placer
    order.obr.obr_3 = filler
    order.obr.obr_4 = f"AITRIAGE^AI lung scan triage^{SCHEME}"
    order.obr.obr_5 = priority
    order.obr.obr_7 = when
    order.obr.obr_18 = accession
    order.obr.obr_22 = when
    order.obr.obr_24 = "RAD"
    order.obr.obr_25 = "F"
    order.obr.obr_27 = f"^^^^^{priority}"
    note = order.add_segment("NTE")
    note.nte_1 = "1"
    note.nte_3 = escape(f"{DISCLAIMER}.")
    return order


def _observations(report: StudyReport) -> list[Observation]:
    """The four OBX rows: triage class, P(urgent), model version, disclaimer."""
    return [
        (
            "CWE",
            f"TRIAGE-CLASS^AI triage class^{SCHEME}",
            f"{report.predicted}^{escape(report.class_name)}^{SCHEME}",
            "",
            ABNORMAL_FLAGS[2 if report.urgent else report.predicted],
        ),
        (
            "NM",
            f"P-URGENT^Probability of urgent class^{SCHEME}",
            f"{float(report.p2):.4f}",
            "1^no units^UCUM",
            "",
        ),
        ("ST", f"MODEL^Model version^{SCHEME}", escape(report.model_version), "", ""),
        (
            "TX",
            f"DISCLAIMER^Disclaimer^{SCHEME}",
            escape(f"{DISCLAIMER}; study of {report.slices} slice(s)"),
            "",
            "",
        ),
    ]


def _add_observations(order: Group, report: StudyReport, when: str) -> None:
    """One OBX group per observation row, each final, timed and naming the model."""
    method = f"AI^{escape(report.model_version)}"
    for index, (value_type, identifier, value, units, flag) in enumerate(_observations(report), 1):
        group = order.add_group("ORU_R01_OBSERVATION")
        obx = group.obx
        obx.obx_1 = str(index)
        obx.obx_2 = value_type
        obx.obx_3 = identifier
        obx.obx_5 = value
        if units:
            obx.obx_6 = units
        if flag:
            obx.obx_8 = flag
        obx.obx_11 = "F"
        obx.obx_14 = when
        obx.obx_17 = method


def _fill_patient(pid: Any, report: StudyReport) -> None:  # noqa: ANN401 - hl7apy segment
    """PID-5 name (XPN components), PID-7 birth date, PID-8 sex, where the study had them."""
    name = patient_module.hl7_name_components(report)
    if any(name):
        pid.pid_5 = "^".join(escape(part) for part in name).rstrip("^")
    if born := escape(patient_module.birth_date(report)):
        pid.pid_7 = born
    if sex := escape(patient_module.sex(report)):
        pid.pid_8 = sex


def build_oru(
    report: StudyReport, message_id: str, sending_app: str = "TRIAGE", receiving_app: str = "RIS"
) -> str:
    """The ORU^R01 (ER7, segments separated by carriage returns) for one decision."""
    if not message_id or len(message_id) > 199:
        raise ValueError("message_id must hold 1 to 199 characters")
    when = _ts(report)
    message = Message("ORU_R01", version=VERSION)
    _fill_msh(message, when, message_id, sending_app, receiving_app)
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    patient.pid.pid_1 = "1"
    patient.pid.pid_3 = escape(report.patient_id or "")
    _fill_patient(patient.pid, report)
    order = _add_order(result, report, when)
    _add_observations(order, report, when)
    return message.to_er7()
