"""The patient and study modules of an instance, kept as received, to copy into what we send back.

Patient (PS3.3 C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2) attributes, with
the instance's Specific Character Set, as DICOM JSON (PS3.18 F): text decoded with the
received character set, absent elements absent, empty (type 2) elements present and empty.
StudyInstanceUID is not among them: the ledger keeps it on its own, and our objects go into
the study it names. The JSON is patient data: it lives in the ledger's study row only (gone
with the study when retention removes it), never in logs, messages or error texts.
"""

from __future__ import annotations

from typing import Any

from imaging.canonical import ScanError

MAX_MODULES_CHARS = 64 * 1024  # DICOM JSON of the modules; a larger header refuses the instance
CHARACTER_SET = "SpecificCharacterSet"
PATIENT = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "QualityControlSubject",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "EthnicGroup",
    "PatientComments",
    "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence",
    "PatientBreedDescription",
    "PatientBreedCodeSequence",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
)
STUDY = (
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence",
    "ConsultingPhysicianName",
    "StudyID",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "RequestingServiceCodeSequence",
    "ProcedureCodeSequence",
    "ReasonForPerformedProcedureCodeSequence",
)
PATIENT_STUDY = (
    "AdmittingDiagnosesDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "Occupation",
    "AdditionalPatientHistory",
    "AdmissionID",
)
KEPT = (*PATIENT, *STUDY, *PATIENT_STUDY)


def modules_json(dataset: Any, source: str) -> str | None:  # noqa: ANN401 - pydicom Dataset
    """The instance's patient and study modules as DICOM JSON (None when it holds none of
    them). A module element pydicom cannot convert, or modules over MAX_MODULES_CHARS,
    refuse the instance, naming the element or the size, never a value."""
    from pydicom.dataset import Dataset

    kept = Dataset()
    for keyword in (CHARACTER_SET, *KEPT):
        if keyword not in dataset:
            continue
        try:
            kept[keyword] = dataset[keyword]  # decoded with the instance's character set
            kept[keyword].to_json_dict(None, 0)
        except Exception:  # pydicom raises many types for a malformed value
            raise ScanError(source, f"malformed {keyword} (not convertible)") from None
    if not any(keyword in kept for keyword in KEPT):
        return None
    text = kept.to_json()
    if len(text) > MAX_MODULES_CHARS:
        raise ScanError(
            source, f"patient and study modules over {MAX_MODULES_CHARS} characters (as JSON)"
        )
    return text


def modules_dataset(text: str | None) -> Any:  # noqa: ANN401 - pydicom Dataset
    """The kept modules (the JSON `modules_json` made) as a data set; empty for None."""
    from pydicom.dataset import Dataset

    return Dataset() if not text else Dataset.from_json(text)


def copy_modules(modules: Any, target: Any) -> None:  # noqa: ANN401 - pydicom Datasets
    """Put every kept element (and the character set they were received in) into `target`,
    replacing what it held; the rest of `target` is left as it is."""
    import copy

    for element in modules:
        target[element.tag] = copy.deepcopy(element)
