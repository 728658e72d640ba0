"""The decision for a FHIR server (R5, validated with fhir.resources), and its POST.

`build_fhir` returns a transaction Bundle with two conditional creates:

- an Observation: code "AI triage class", value = the class (CodeableConcept in our code
  system), interpretation AA / A / N, components P(urgent) (Quantity, UCUM "1") and the urgent
  flag (boolean), the model version as the device, a note that it is not a diagnosis;
- a DiagnosticReport: status final, category RAD, code "AI triage", conclusion text (class,
  P(urgent), model, "not a diagnosis"), conclusionCode = the class, result -> the Observation
  (by its urn:uuid fullUrl), study -> the ImagingStudy by its DICOM Study Instance UID.

Both carry `identifier` = our system URI + `<study_id>/<decision>` (the Observation with a
`/observation` suffix), and each entry's `request.ifNoneExist` is `identifier=system|value`,
so a resend creates nothing new. The accession is a second identifier of type ACSN; the
patient is referred to by identifier (the id as received; we hold no assigning authority),
with the name the study came with as its display (`gateway.outbox.patient`).
Full URLs are urn:uuid UUIDs derived from the decision, so the bundle is the same on resend.

`post_fhir` POSTs it with urllib: 2xx delivered; 5xx, 408, 429, a time-out or a refused
connection retryable; any other 4xx, and any 3xx (redirects are not followed: a moved
endpoint is a configuration to fix, and a POST must not silently go elsewhere), not.
Environment proxies are not used: the FHIR server is on the hospital network.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from typing import Any

from gateway.outbox.deadline import http_exchange
from gateway.outbox.patient import patient_display
from gateway.outbox.report import (
    DISCLAIMER,
    DeliveryError,
    StudyReport,
    dicom_study_uid,
)

IDENTIFIER_SYSTEM = "urn:triage:decision"
CODE_SYSTEM = "urn:triage:codes"
CLASS_SYSTEM = "urn:triage:triage-class"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
FHIR_JSON = "application/fhir+json"
INTERPRETATIONS = {0: ("N", "Normal"), 1: ("A", "Abnormal"), 2: ("AA", "Critical abnormal")}
MAX_BODY = 64 * 1024


def _fullurl(report: StudyReport, role: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{IDENTIFIER_SYSTEM}/{report.decision_key}/{role}')}"


def _class_concept(report: StudyReport) -> dict[str, Any]:
    return {
        "coding": [
            {"system": CLASS_SYSTEM, "code": str(report.predicted), "display": report.class_name}
        ],
        "text": report.class_name,
    }


def _code(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}], "text": display}


def conclusion(report: StudyReport) -> str:
    return (
        f"AI triage: {report.headline} (class {report.class_name}, P(urgent) "
        f"{float(report.p2):.3f}, {report.slices} slice(s), model {report.model_version}). "
        f"{DISCLAIMER}."
    )


def _subject(report: StudyReport) -> dict[str, Any] | None:
    """The patient reference by identifier (the id as received), with the patient's name as
    its display where the study came with one; None without an id."""
    if not report.patient_id:
        return None
    subject: dict[str, Any] = {"type": "Patient", "identifier": {"value": report.patient_id}}
    if display := patient_display(report):
        subject["display"] = display
    return subject


def _p_urgent_component(report: StudyReport) -> dict[str, Any]:
    """The Observation component holding P(urgent) as a unitless UCUM Quantity."""
    return {
        "code": _code("P-URGENT", "Probability of urgent class"),
        "valueQuantity": {
            "value": round(float(report.p2), 6),
            "unit": "1",
            "system": UCUM,
            "code": "1",
        },
    }


def _observation(report: StudyReport, identifier: dict[str, str], when: str) -> dict[str, Any]:
    """The Observation: triage class, interpretation, P(urgent) and urgent flag components."""
    flag, flag_text = INTERPRETATIONS[2 if report.urgent else report.predicted]
    return {
        "resourceType": "Observation",
        "identifier": [identifier],
        "status": "final",
        "category": [_code("ai-triage", "AI triage")],
        "code": _code("TRIAGE-CLASS", "AI triage class"),
        "effectiveDateTime": when,
        "issued": when,
        "valueCodeableConcept": _class_concept(report),
        "interpretation": [
            {"coding": [{"system": INTERPRETATION, "code": flag, "display": flag_text}]}
        ],
        "method": {"text": f"AI triage, model {report.model_version}"},
        "device": {"display": f"triage model {report.model_version}"},
        "note": [{"text": f"{DISCLAIMER}."}],
        "component": [
            _p_urgent_component(report),
            {"code": _code("URGENT", "Urgent"), "valueBoolean": bool(report.urgent)},
        ],
    }


def _report_identifiers(report: StudyReport, identifier: dict[str, str]) -> list[dict[str, Any]]:
    """The DiagnosticReport's identifiers: ours, then the accession (type ACSN) if any."""
    identifiers: list[dict[str, Any]] = [identifier]
    if report.accession:
        identifiers.append(
            {
                "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "ACSN"}]},
                "value": report.accession,
            }
        )
    return identifiers


def _diagnostic_report(
    report: StudyReport, identifier: dict[str, str], when: str
) -> dict[str, Any]:
    """The DiagnosticReport: conclusion, result -> the Observation, study -> ImagingStudy."""
    return {
        "resourceType": "DiagnosticReport",
        "identifier": _report_identifiers(report, identifier),
        "status": "final",
        "category": [{"coding": [{"system": SECTION, "code": "RAD", "display": "Radiology"}]}],
        "code": _code("AI-TRIAGE", "AI triage of lung scans"),
        "effectiveDateTime": when,
        "issued": when,
        "result": [{"reference": _fullurl(report, "observation")}],
        "study": [
            {
                "type": "ImagingStudy",
                "identifier": {
                    "system": "urn:dicom:uid",
                    "value": f"urn:oid:{dicom_study_uid(report)}",
                },
            }
        ],
        "conclusion": conclusion(report),
        "conclusionCode": [_class_concept(report)],
    }


def _entry(
    report: StudyReport, role: str, resource: dict[str, Any], identifier: dict[str, str]
) -> dict[str, Any]:
    """A transaction entry: conditional create (ifNoneExist on the identifier) of `resource`."""
    return {
        "fullUrl": _fullurl(report, role),
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": "identifier="
            + urllib.parse.quote(f"{identifier['system']}|{identifier['value']}", safe=":/|"),
        },
    }


def build_fhir(report: StudyReport, identifier_system: str = IDENTIFIER_SYSTEM) -> dict[str, Any]:
    """A transaction Bundle (FHIR R5 JSON) with the DiagnosticReport and its Observation."""
    from fhir.resources.bundle import Bundle

    when = report.decided_at.isoformat().replace("+00:00", "Z")
    report_id = {"system": identifier_system, "value": report.decision_key}
    observation_id = {"system": identifier_system, "value": f"{report.decision_key}/observation"}
    observation = _observation(report, observation_id, when)
    diagnostic = _diagnostic_report(report, report_id, when)
    subject = _subject(report)
    if subject:
        observation["subject"] = subject
        diagnostic["subject"] = subject
    entries = [
        _entry(report, "observation", observation, observation_id),
        _entry(report, "report", diagnostic, report_id),
    ]
    payload = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    bundle = Bundle.model_validate(payload)  # raises when the models reject it
    return json.loads(bundle.model_dump_json())


def post_fhir(url: str, payload: dict[str, Any], timeout: float = 30.0) -> None:
    """POST the bundle to the FHIR server's base URL; DeliveryError unless it answers 2xx
    within `timeout` for the whole exchange (a dripped answer is cut, never counted)."""
    if not url.lower().startswith(("http://", "https://")):
        raise DeliveryError("FHIR URL must be http or https", retryable=False)
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
    )
    status, _answer = http_exchange(request, timeout, "FHIR server", MAX_BODY)
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        raise DeliveryError(f"FHIR server redirected ({status}), not followed", retryable=False)
    retryable = status >= 500 or status in (408, 429)
    raise DeliveryError(f"FHIR server answered {status}", retryable=retryable)
