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


def test_stow_rs_sends_the_sr_always_and_the_key_image_for_urgent_studies() -> None:
    plan = routing(Settings(dicomweb_destination="https://pacs.example/dicom-web/"))
    assert plan.channels(urgent=False) == ("dicomweb",)
    assert plan.channels(urgent=True) == ("dicomweb", "dicomweb_key")


def test_stow_rs_settings_are_checked() -> None:
    import pytest
    from pydantic import ValidationError

    assert Settings(dicomweb_destination="http://pacs/dw/").dicomweb_destination == "http://pacs/dw"
    with pytest.raises(ValidationError, match="TRIAGE_DICOMWEB_DESTINATION"):
        Settings(dicomweb_destination="file:///etc/passwd")
    with pytest.raises(ValidationError, match="set one only"):
        Settings(dicomweb_token="t", dicomweb_username="u", dicomweb_password="p")
    with pytest.raises(ValidationError, match="go together"):
        Settings(dicomweb_username="u")
