"""The decision as a DICOM Structured Report in the study it is about.

Template: TID 1500 "Measurement Report" (highdicom `MeasurementReport`) in a Comprehensive
SR document (`ComprehensiveSR`, not Comprehensive 3D SR: we hold no 3D coordinates, and the
plain Comprehensive SR class is the one PACS and viewers most widely accept). TID 1500 fits a
classification through one image-level measurement group (TID 1501):

- observation context: a device observer (TID 1004) named by our AE title;
- the group's algorithm identification (TID 4019): our name, family "Artificial
  Intelligence", version = the model version;
- qualitative evaluations (CODE): "AI triage class" = healthy / non-urgent / urgent (local
  coding scheme 99TRIAGE, code = the class number) and "Urgent" = Yes / No (SNOMED CT);
- a measurement (TID 300): "Probability of urgent class" = the study's P(2), UCUM "1";
- a TEXT qualitative evaluation (TID 1501 row 13): the "not a diagnosis" statement and the
  number of slices read;
- source image for the group: the most suspicious slice when it came in as DICOM.

Evidence (CurrentRequestedProcedureEvidenceSequence) is that slice, and our key image when the
caller names it (an urgent study's key image is its own delivery, sent once its saliency map
is stored: the SR names it by its derived SOPInstanceUID and does not wait for it); with neither (a calm study from non-DICOM input)
the SR refers to no instance and has no evidence sequence (type 1C).

Patient and study: the modules the study came with, copied exactly with their character set
(`gateway.outbox.patient`).

UIDs: the series is one per study (ours), the instance one per decision, both derived from
our study id (and decision) by `report.derived_uid` (2.25.<name-based UUID>; pydicom 3's
`generate_uid(prefix=None, entropy_srcs=...)` ignores the sources and is random), so a
resend is the same SOPInstanceUID and the PACS stores it once.
Content date and time are the decision's, so a resend is the same document too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ComprehensiveSRStorage

from gateway.outbox.patient import patient_and_study
from gateway.outbox.report import (
    KeyImageReference,
    StudyReport,
    derived_uid,
    dicom_study_uid,
)
from imaging.identity import OUR_MANUFACTURER
from imaging.patient_modules import copy_modules
from schemas.model_card import CLASS_NAMES

if TYPE_CHECKING:
    from highdicom.sr import (
        MeasurementsAndQualitativeEvaluations,
        ObservationContext,
        SourceImageForMeasurementGroup,
    )

SCHEME = "99TRIAGE"
SERIES_NUMBER = 9901
MANUFACTURER = OUR_MANUFACTURER  # marks the SR as ours when it comes back with its study
TRIAGE_CLASS = Code("TRIAGE-CLASS", SCHEME, "AI triage class")
URGENT_FLAG = Code("URGENT", SCHEME, "Urgent")
P_URGENT = Code("P-URGENT", SCHEME, "Probability of urgent class")
STATEMENT = Code("C0034375", "UMLS", "Qualitative Evaluations")  # TID 1501 row 13 (TEXT)
PROCEDURE = Code("363679005", "SCT", "Imaging")
UNITLESS = Code("1", "UCUM", "no units")


def class_code(predicted: int) -> Code:
    return Code(str(predicted), SCHEME, CLASS_NAMES[predicted])


def sr_series_uid(report: StudyReport) -> str:
    return derived_uid(report, "sr-series", per_decision=False)


def sr_sop_uid(report: StudyReport) -> str:
    """The SR's SOPInstanceUID: the PACS's idempotency key for this decision."""
    return derived_uid(report, "sr")


def _evidence(
    report: StudyReport, key_image: KeyImageReference | None
) -> tuple[list[Dataset], bool]:
    """Stub datasets naming the instances the SR refers to, with the patient and study
    modules as received (highdicom copies them, and their character set, from the first); and whether any of them is real (when
    none is, the one stub names the SR itself and the evidence sequence is dropped)."""
    identities = []
    if report.has_dicom_top_slice:
        identities.append((report.top_series_uid, report.top_sop_uid, report.top_sop_class_uid))
    if key_image is not None:
        identities.append((key_image.series_uid, key_image.sop_uid, key_image.sop_class_uid))
    real = bool(identities)
    if not real:
        identities.append((sr_series_uid(report), sr_sop_uid(report), ComprehensiveSRStorage))
    evidence = []
    for series_uid, sop_uid, sop_class_uid in identities:
        item = Dataset()
        copy_modules(patient_and_study(report), item)
        item.StudyInstanceUID = dicom_study_uid(report)
        item.SeriesInstanceUID = series_uid
        item.SOPInstanceUID = sop_uid
        item.SOPClassUID = sop_class_uid
        evidence.append(item)
    return evidence, real


def _observation_context(report: StudyReport, our_ae_title: str) -> ObservationContext:
    """TID 1004: a device observer named by our AE title, with a derived device UID."""
    import highdicom as hd

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=str(derived_uid(report, f"device:{our_ae_title}", per_decision=False)),
        name=our_ae_title,
        manufacturer_name=MANUFACTURER,
        model_name=f"lung-scan triage {report.model_version}"[:64],
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _source_images(report: StudyReport) -> list[SourceImageForMeasurementGroup] | None:
    """The most suspicious slice as the group's source image, or None for non-DICOM input."""
    import highdicom as hd

    if not report.has_dicom_top_slice:
        return None
    return [
        hd.sr.SourceImageForMeasurementGroup(
            referenced_sop_class_uid=report.top_sop_class_uid,
            referenced_sop_instance_uid=report.top_sop_uid,
        )
    ]


def _measurement_group(report: StudyReport) -> MeasurementsAndQualitativeEvaluations:
    """TID 1501: class and urgent flag (CODE), P(urgent) (NUM), the statement (TEXT)."""
    import highdicom as hd

    algorithm = hd.sr.AlgorithmIdentification(
        name="triage", version=report.model_version, family=codes.cid7162.ArtificialIntelligence
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(report, "sr-tracking"), identifier="AI triage decision"
        ),
        algorithm_id=algorithm,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(TRIAGE_CLASS, class_code(report.predicted)),
            hd.sr.QualitativeEvaluation(
                URGENT_FLAG, codes.SCT.Yes if report.urgent else codes.SCT.No
            ),
        ],
        measurements=[
            hd.sr.Measurement(
                name=P_URGENT,
                value=round(float(report.p2), 6),
                unit=UNITLESS,
                algorithm_id=algorithm,
            )
        ],
        source_images=_source_images(report),
    )
    group[0].ContentSequence.append(
        hd.sr.TextContentItem(
            name=STATEMENT,
            value=f"Not a diagnosis. AI triage of {report.slices} slice(s) for worklist priority only",
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )
    return group


def _stamp(document: Dataset, report: StudyReport, our_ae_title: str) -> None:
    """Set dates and times to the decision's (not "now"), the description and our station."""
    moment = report.decided_at
    document.ContentDate = document.SeriesDate = moment.strftime("%Y%m%d")
    document.ContentTime = document.SeriesTime = moment.strftime("%H%M%S")
    document.InstanceCreationDate = moment.strftime("%Y%m%d")
    document.InstanceCreationTime = moment.strftime("%H%M%S")
    document.TimezoneOffsetFromUTC = "+0000"
    for equipment in document.get("ContributingEquipmentSequence", []):
        equipment.ContributionDateTime = moment.strftime("%Y%m%d%H%M%S")  # not "now"
    document.SeriesDescription = "AI triage report (not a diagnosis)"
    document.StationName = our_ae_title[:16]
    document.file_meta.SourceApplicationEntityTitle = our_ae_title[:16]


def build_sr(
    report: StudyReport, our_ae_title: str, key_image: KeyImageReference | None = None
) -> Dataset:
    """The decision as a Comprehensive SR (TID 1500) in the report's study, new series.

    `key_image`: the study's key image (`key_image.key_image_reference`), to list it as
    evidence; leave it out for a study that gets none."""
    import highdicom as hd

    content = hd.sr.MeasurementReport(
        observation_context=_observation_context(report, our_ae_title),
        procedure_reported=PROCEDURE,
        imaging_measurements=[_measurement_group(report)],
    )
    evidence, real_evidence = _evidence(report, key_image)
    document = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=content[0],
        series_instance_uid=sr_series_uid(report),
        series_number=SERIES_NUMBER,
        sop_instance_uid=sr_sop_uid(report),
        instance_number=report.decision,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=True,
    )
    if not real_evidence:  # type 1C: no content item refers to an instance
        del document.CurrentRequestedProcedureEvidenceSequence
    _stamp(document, report, our_ae_title)
    copy_modules(patient_and_study(report), document)  # all of them, exactly as received
    return document
