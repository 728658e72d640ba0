"""Results that belong to their patient: the SR, the key image, the ORU and the FHIR report
carry the patient and study modules the study came with, exactly, UTF-8 names included."""

from __future__ import annotations

import io

import pydicom
from fhir.resources.bundle import Bundle
from hl7apy.parser import parse_message

from gateway.outbox.dicom_sr import build_sr
from gateway.outbox.fhir import build_fhir
from gateway.outbox.hl7 import build_oru
from gateway.outbox.key_image import build_key_image, key_image_reference
from gateway.outbox.report import StudyReport
from imaging.patient_modules import modules_json
from tests.gateway.outbox.conftest import make_report
from tests.imaging.test_patient_modules import NAME, received

SAME = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
    "AccessionNumber",
    "SpecificCharacterSet",
)


def kept_report(**changes: object) -> StudyReport:
    return make_report(patient_modules=modules_json(received(**changes), "instance-1"))


def written(dataset: pydicom.Dataset) -> tuple[bytes, pydicom.Dataset]:
    """The object as it goes on the wire, and read back."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def assert_same_patient_and_study(dataset: pydicom.Dataset) -> None:
    source = received()
    raw, back = written(dataset)
    for keyword in SAME:
        assert back[keyword].value == source[keyword].value, keyword
    assert NAME.encode("utf-8") in raw  # in the character set it came in


def test_the_sr_carries_the_patient_and_study_as_received() -> None:
    report = kept_report()
    sr = build_sr(report, "TRIAGE", key_image=key_image_reference(report))
    assert_same_patient_and_study(sr)
    assert sr.StudyInstanceUID == report.study_uid


def test_the_key_image_carries_the_patient_and_study_as_received() -> None:
    assert_same_patient_and_study(build_key_image(kept_report(), "TRIAGE"))


def test_a_latin1_study_stays_latin1() -> None:
    report = kept_report(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Renée")
    raw, back = written(build_sr(report, "TRIAGE"))
    assert back.SpecificCharacterSet == "ISO_IR 100" and str(back.PatientName) == "Müller^Renée"
    assert "Müller^Renée".encode("latin-1") in raw


def test_without_kept_modules_the_type_2_elements_are_present_and_empty() -> None:
    _, back = written(build_key_image(make_report(), "TRIAGE"))
    assert back.PatientID == "PAT-0042" and back.AccessionNumber == "ACC-77"
    assert back.PatientName == "" and back.PatientBirthDate == "" and back.StudyDate == ""


def test_the_oru_names_the_patient() -> None:
    message = parse_message(build_oru(kept_report(), "MSG-9"))
    assert message.msh.msh_18.value == "UNICODE UTF-8"
    pid = message.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.pid
    assert pid.pid_3.value == "PAT-0042"
    assert pid.pid_5.value == "Müller-Łukasiewicz^Zoë"
    assert (pid.pid_7.value, pid.pid_8.value) == ("19610203", "F")


def test_a_delimiter_in_the_name_cannot_shift_fields() -> None:
    message = parse_message(build_oru(kept_report(PatientName="O|Brien^Ann&Mary"), "MSG-10"))
    pid = message.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.pid
    assert pid.pid_5.value == "O\\F\\Brien^Ann\\T\\Mary" and pid.pid_7.value == "19610203"


def test_the_fhir_subject_shows_the_patients_name() -> None:
    bundle = Bundle.model_validate(build_fhir(kept_report()))
    for entry in bundle.entry:
        assert entry.resource.subject.display == "Zoë Müller-Łukasiewicz"
        assert entry.resource.subject.identifier.value == "PAT-0042"
