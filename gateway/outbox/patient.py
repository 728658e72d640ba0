"""Who and which study a message is about, as the hospital sent it: the patient and study
modules the ledger kept (imaging/patient_modules.py), for every object and message we send.

DICOM objects (SR, key image) get the modules copied exactly, with their Specific Character
Set; the HL7 ORU and the FHIR report take the patient's name (and the ORU the birth date and
sex) from them. Where the ledger kept none (input that was not DICOM, or a study received
before they were kept), the patient id and accession the ledger has, and the other type 2
elements present and empty.
"""

from __future__ import annotations

from typing import Any

from gateway.outbox.report import StudyReport
from imaging.patient_modules import modules_dataset

TYPE_2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
    "AccessionNumber",
)
XPN_ORDER = (0, 1, 2, 4, 3)  # DICOM PN family^given^middle^prefix^suffix -> HL7 XPN order


def patient_and_study(report: StudyReport) -> Any:  # noqa: ANN401 - pydicom Dataset
    """The modules to copy into an object we send (see the module doc)."""
    modules = modules_dataset(report.patient_modules)
    if "PatientID" not in modules:
        modules.PatientID = report.patient_id or ""
    if "AccessionNumber" not in modules:
        modules.AccessionNumber = report.accession or ""
    for keyword in TYPE_2:
        if keyword not in modules:
            setattr(modules, keyword, "")
    return modules


def _text(report: StudyReport, keyword: str) -> str:
    value = modules_dataset(report.patient_modules).get(keyword)
    return "" if value is None else str(value).strip()


def patient_name_components(report: StudyReport) -> list[str]:
    """The alphabetic PatientName as received, split at '^' (family, given, middle, prefix,
    suffix); empty when none was received."""
    name = _text(report, "PatientName").split("=")[0]  # the alphabetic component group
    return name.split("^") if name else []


def patient_display(report: StudyReport) -> str:
    """The name as a person reads it: given names, then family name (empty without a name)."""
    parts = patient_name_components(report) + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    return " ".join(part for part in (prefix, given, middle, family, suffix) if part)


def hl7_name_components(report: StudyReport) -> list[str]:
    """PatientName in HL7 XPN component order (family, given, middle, suffix, prefix)."""
    parts = patient_name_components(report)
    if not parts:
        return []
    parts += [""] * (5 - len(parts))
    return [parts[index] for index in XPN_ORDER]


def birth_date(report: StudyReport) -> str:
    return _text(report, "PatientBirthDate")


def sex(report: StudyReport) -> str:
    """PatientSex as received (M, F or O: the same codes as HL7 table 0001)."""
    return _text(report, "PatientSex")
