"""Which channels a decision goes to, from the settings alone: DICOM and FHIR for every
decided study, HL7 for urgent ones unless TRIAGE_HL7_ALL_STUDIES, the webhook for urgent ones."""

from __future__ import annotations

from gateway.outbox.routing import routing
from schemas.settings import Settings

EVERYTHING = {
    "dicom_destination": "PACS@127.0.0.1:11112",
    "fhir_url": "http://127.0.0.1:8080/fhir",
    "hl7_destination": "127.0.0.1:2575",
    "notify_url": "http://127.0.0.1:9000/hook",
}


def test_nothing_configured_sends_nothing() -> None:
    plan = routing(Settings())
    assert plan.channels(urgent=True) == () and plan.channels(urgent=False) == ()


def test_every_channel_configured() -> None:
    plan = routing(Settings(**EVERYTHING))
    assert plan.channels(urgent=False) == ("dicom", "fhir")
    assert plan.channels(urgent=True) == ("dicom", "fhir", "key_image", "hl7", "webhook")


def test_hl7_for_every_study_when_asked() -> None:
    plan = routing(Settings(hl7_destination="127.0.0.1:2575", hl7_all_studies=True))
    assert plan.channels(urgent=False) == ("hl7",) and plan.channels(urgent=True) == ("hl7",)


def test_the_webhook_only_for_urgent_studies() -> None:
    plan = routing(Settings(notify_url="https://hooks.example/urgent"))
    assert plan.channels(urgent=False) == () and plan.channels(urgent=True) == ("webhook",)
