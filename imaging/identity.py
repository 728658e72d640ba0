"""The DICOM identity of an instance: which study, series and instance a scan is.

These values are patient data in the sense of the rules here: they are kept in the ledger
only, never in logs, messages or error texts (our own ids go there).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DicomIdentity:
    """StudyInstanceUID and the rest; None where the header holds no (usable) value."""

    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    accession: str | None
    patient_id: str | None
    modality: str | None
    instance_number: int | None
    slice_position: float | None
    patient_issuer: str | None = None  # IssuerOfPatientID: whose PatientID it is
    patient_name: str | None = None  # PatientName as received (shown only, never trusted)
    study_date: str | None = None
    # the patient and study modules as received, DICOM JSON (imaging/patient_modules.py)
    modules: str | None = None


# The Manufacturer (0008,0070) of every object triage sends back (SR, key image): an instance
# that carries it is one of ours coming back with its study, never a slice to triage.
OUR_MANUFACTURER = "triage"
