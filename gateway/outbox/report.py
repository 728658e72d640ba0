"""What every outbound channel needs to know about one study decision, and how a send fails.

`StudyReport` is built by the outbox from the `studies` row (and the most suspicious slice's
`scans` row); the builders in this package turn it into a DICOM SR and key image, an HL7 ORU
and a FHIR bundle. Every identifier they derive (SOPInstanceUIDs, FHIR identifiers) comes from
`study_id` and `decision`, so a resend of one decision is the same object on the receiver,
and a re-decided study (decision 2, 3, ...) is a new one.

`DeliveryError` is the one exception the senders raise: `retryable` tells the outbox whether
to try again later; `reason` is short and our senders put no patient data in it (no patient
id, accession or UIDs), so it may be logged and stored as a delivery's last error. One
exception to know: an HL7 AE/AR quotes the receiver's own MSA-3 / ERR text (cut to 200
characters), which a RIS could word with an id in it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from schemas.model_card import CLASS_NAMES, URGENT_CLASS

KEY_IMAGE_SHAPE = (64, 64)
DISCLAIMER = "AI triage for worklist priority only, not a diagnosis"
MAX_REASON = 200
# namespace of our derived DICOM UIDs (a fixed random UUID: never change it, resends depend on it)
UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")
UID_NAMESPACE = uuid.UUID("6f1d3c52-8a47-4e0b-9d2c-3b7e51a9c004")


class DeliveryError(Exception):
    """A delivery that did not happen. `retryable`: the same payload may pass later."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        reason = " ".join(str(reason).split())[:MAX_REASON]
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"DeliveryError({self.reason!r}, retryable={self.retryable})"


class NotReady(DeliveryError):
    """The message cannot be built yet: something it needs (a key image's saliency map) is
    not stored. Not retried with backoff: the row waits until what it needs is there."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)


@dataclass(frozen=True)
class KeyImageReference:
    """The instance a study's key image is (or will be) in the PACS: what the SR names."""

    series_uid: str
    sop_uid: str
    sop_class_uid: str


@dataclass(frozen=True)
class StudyReport:
    """One decision on one study, as every channel reports it.

    study_id      our `studies.id`; with `decision` (`studies.decisions`, 1 for the first)
                  the seed of every derived identifier
    study_uid     DICOM StudyInstanceUID, or `triage:<key>` for a study of our own
    p2, urgent, predicted, model_version, decided_at (`classified_at`, UTC)
    slices        how many slices the decision covers
    top_*         the most suspicious slice's DICOM identity (None for non-DICOM input)
    key_image     that slice, canonical 64x64 uint8 (None: no key image can be built)
    saliency      64x64 float in [0, 1] over that slice (None: no overlay)
    placer_order_number, filler_order_number
                  the RIS's order for the accession, as received (None: no order seen)
    patient_modules
                  the study's patient and study modules as received, DICOM JSON
                  (imaging/patient_modules.py; None: the ledger kept none)
    """

    study_id: str
    decision: int
    study_uid: str
    accession: str | None
    patient_id: str | None
    p2: float
    urgent: bool
    predicted: int
    model_version: str
    decided_at: datetime
    slices: int
    top_series_uid: str | None = None
    top_sop_uid: str | None = None
    top_sop_class_uid: str | None = None
    key_image: np.ndarray | None = field(default=None, repr=False, compare=False)
    saliency: np.ndarray | None = field(default=None, repr=False, compare=False)
    placer_order_number: str | None = None
    filler_order_number: str | None = None
    patient_modules: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.study_id:
            raise ValueError("study_id is empty")
        if self.decision < 1:
            raise ValueError(f"decision must be >= 1, got {self.decision}")
        if self.predicted not in range(len(CLASS_NAMES)):
            raise ValueError(f"predicted must be 0, 1 or 2, got {self.predicted}")
        if not 0.0 <= float(self.p2) <= 1.0:
            raise ValueError(f"p2 must be within [0, 1], got {self.p2}")
        if self.slices < 1:
            raise ValueError(f"slices must be >= 1, got {self.slices}")
        if self.decided_at.tzinfo is None:
            raise ValueError("decided_at must be timezone-aware")
        object.__setattr__(self, "decided_at", self.decided_at.astimezone(UTC))
        if self.key_image is not None:
            image = np.asarray(self.key_image)
            if image.shape != KEY_IMAGE_SHAPE or image.dtype != np.uint8:
                raise ValueError(f"key_image must be uint8 {KEY_IMAGE_SHAPE}")
            object.__setattr__(self, "key_image", image)
        if self.saliency is not None:
            heat = np.asarray(self.saliency, dtype=np.float64)
            if heat.shape != KEY_IMAGE_SHAPE or not np.all(np.isfinite(heat)):
                raise ValueError(f"saliency must be finite float {KEY_IMAGE_SHAPE}")
            object.__setattr__(self, "saliency", np.clip(heat, 0.0, 1.0))

    @property
    def class_name(self) -> str:
        """The predicted class's name on the model card (healthy, non-urgent, urgent)."""
        return CLASS_NAMES[self.predicted]

    @property
    def headline(self) -> str:
        """'urgent' when the urgent flag is set, else the class name (what a reader sees first)."""
        return CLASS_NAMES[URGENT_CLASS] if self.urgent else self.class_name

    @property
    def decision_key(self) -> str:
        """`<study_id>/<decision>`: the idempotency key of this decision on every channel."""
        return f"{self.study_id}/{self.decision}"

    @property
    def has_dicom_top_slice(self) -> bool:
        return bool(self.top_series_uid and self.top_sop_uid and self.top_sop_class_uid)


def derived_uid(report: StudyReport, role: str, *, per_decision: bool = True) -> str:
    """A DICOM UID derived from our study id (and decision) and a role name: the same inputs
    always give the same UID, so a resend is the same instance.

    `2.25.<int>` of a name-based (SHA-1, version 5) UUID, the UUID-derived form of PS3.5 B.2.
    Not `generate_uid(prefix=None, entropy_srcs=...)`: pydicom 3 ignores `entropy_srcs` when
    `prefix` is None and returns a random UUID4 UID every call.
    """
    sources = [report.study_id, role]
    if per_decision:
        sources.insert(1, str(report.decision))
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '|'.join(sources)).int}"


def dicom_study_uid(report: StudyReport) -> str:
    """The StudyInstanceUID our objects go into: the study's own when it is a valid DICOM UID,
    else (a study of our own, `triage:<key>`) one derived from our study id."""
    if len(report.study_uid) <= 64 and UID_PATTERN.fullmatch(report.study_uid):
        return report.study_uid
    return derived_uid(report, "study", per_decision=False)


def hl7_message_id(report: StudyReport, channel: str = "oru") -> str:
    """A 20-character MSH-10 (the v2.5 length) derived from the decision key and a channel,
    for callers that have no outbox row id to use."""
    import hashlib

    digest = hashlib.sha256(f"{report.decision_key}/{channel}".encode()).hexdigest()
    return digest[:20].upper()
