"""Sending one outbox row: the decision's facts from the ledger, then its channel's sender.

The `deliver` task (worker/delivering.py) claims a row in the ledger and calls `send`; the
payload builders and senders are this package's channel modules (the DICOM SR, and the key
image as a row of its own, by C-STORE, and both by STOW-RS for a DICOMweb PACS; HL7 ORU over MLLP, FHIR over HTTP, the webhook). Every receiver is idempotent on our ids: the SR and key image
SOPInstanceUIDs, the HL7 MSH-10 and the FHIR identifier are derived from our study id and
decision number, so a resend is the same message and a re-decided study a new one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom import Dataset
from sqlalchemy.engine import Engine

from gateway.outbox.report import (
    DeliveryError,
    KeyImageReference,
    NotReady,
    StudyReport,
    hl7_message_id,
)
from gateway.tls import ClientTls
from imaging.canonical import SCAN_SIZE
from ledger.deliveries import report_facts
from schemas.settings import Settings

SEND_TIMEOUT_S = 20.0
SOP_CLASS_OF_MODALITY = {  # the storage class of a received slice, for references to it
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
}


def send(engine: Engine, delivery: dict[str, Any], settings: Settings) -> None:
    """Send one claimed outbox row; raises DeliveryError (retryable or not) when it fails."""
    facts = report_facts(engine, delivery["study_id"])
    if facts is None or facts["p2"] is None:
        raise DeliveryError("the study has no decision to report", retryable=False)
    report = study_report(facts, delivery)
    channel = delivery["channel"]
    if channel == "dicom":
        _send_sr(report, settings)
    elif channel == "key_image":
        _send_key_image(report, settings)
    elif channel == "dicomweb":
        _stow(_sr(report, settings), settings)
    elif channel == "dicomweb_key":
        _stow(_key_image(report, settings), settings)
    elif channel == "hl7":
        _send_hl7(report, settings)
    elif channel == "fhir":
        _send_fhir(report, settings)
    elif channel == "webhook":
        _send_webhook(facts, settings)
    else:
        raise DeliveryError(f"unknown channel {channel!r}", retryable=False)


def study_report(facts: dict[str, Any], delivery: dict[str, Any]) -> StudyReport:
    """The facts of a decision, as every channel's builder takes them."""
    pixels = facts.get("top_pixels")
    key_image = (
        np.frombuffer(pixels, np.uint8).reshape(SCAN_SIZE, SCAN_SIZE).copy()
        if pixels is not None and len(pixels) == SCAN_SIZE * SCAN_SIZE
        else None
    )
    saliency = facts.get("saliency")
    return StudyReport(
        study_id=facts["id"],
        decision=delivery["decision"],
        study_uid=facts["study_uid"],
        accession=facts["accession"],
        patient_id=facts["patient_id"],
        p2=min(1.0, max(0.0, float(facts["p2"]))),
        urgent=bool(facts["urgent"]),
        predicted=int(facts["predicted"]),
        model_version=facts["model_version"],
        decided_at=facts["classified_at"],
        slices=int(facts["slices"]),
        top_series_uid=facts["top_series_uid"],
        top_sop_uid=facts["top_sop_uid"],
        top_sop_class_uid=SOP_CLASS_OF_MODALITY.get(facts["top_modality"] or ""),
        key_image=key_image,
        saliency=(
            np.frombuffer(saliency, np.uint8).reshape(SCAN_SIZE, SCAN_SIZE) / 255.0
            if saliency is not None
            else None
        ),
        placer_order_number=facts.get("placer_order_number"),
        filler_order_number=facts.get("filler_order_number"),
        patient_modules=facts.get("patient_modules"),
    )


def _sr(report: StudyReport, settings: Settings) -> Dataset:
    """The SR of every decided study, sent at once: it never waits for the key image. An
    urgent study's SR names its key image (sent as its own delivery) by that image's derived
    SOPInstanceUID."""
    from gateway.outbox.dicom_sr import build_sr

    return build_sr(report, settings.dicom_ae_title, key_image=_key_image_reference(report))


def _send_sr(report: StudyReport, settings: Settings) -> None:
    from gateway.outbox.cstore import send_cstore

    send_cstore(
        [_sr(report, settings)], settings.dicom_destination, settings.dicom_ae_title,
        SEND_TIMEOUT_S, _pacs_tls(settings),
    )  # fmt: skip


def _stow(dataset: Dataset, settings: Settings) -> None:
    """STOW-RS one dataset to the DICOMweb PACS, with its token or user and password."""
    from gateway.outbox.dicomweb import StowAuth, post_stow

    auth = StowAuth(settings.dicomweb_token, settings.dicomweb_username, settings.dicomweb_password)
    post_stow(settings.dicomweb_destination, [dataset], auth, SEND_TIMEOUT_S)


def _key_image_reference(report: StudyReport) -> KeyImageReference | None:
    """The key image an urgent study gets (series, instance, class), None for a calm one."""
    from gateway.outbox.key_image import key_image_reference

    return key_image_reference(report) if report.urgent and report.key_image is not None else None


def _key_image(report: StudyReport, settings: Settings) -> Dataset:
    """An urgent study's key image with its saliency overlay; NotReady until a model worker
    has stored the saliency map (the row then waits, see ledger/deliveries.py)."""
    from gateway.outbox.key_image import build_key_image

    if report.key_image is None:
        raise DeliveryError("the most suspicious slice has no usable pixels", retryable=False)
    if report.saliency is None:
        raise NotReady("the key image's saliency map is not stored yet")
    return build_key_image(report, settings.dicom_ae_title)


def _send_key_image(report: StudyReport, settings: Settings) -> None:
    from gateway.outbox.cstore import send_cstore

    send_cstore(
        [_key_image(report, settings)], settings.dicom_destination, settings.dicom_ae_title,
        SEND_TIMEOUT_S, _pacs_tls(settings),
    )  # fmt: skip


def _pacs_tls(settings: Settings) -> ClientTls | None:
    """The PACS's TLS, read for each delivery (renewed files are used without a restart); a
    file that cannot serve is a retryable failure naming its setting (an operator fixes it)."""
    from gateway.tls import TlsSettingsError, destination_tls

    try:
        return destination_tls(settings)
    except TlsSettingsError as error:
        raise DeliveryError(str(error), retryable=True) from None


def _send_hl7(report: StudyReport, settings: Settings) -> None:
    from gateway.outbox.hl7 import build_oru
    from gateway.outbox.mllp import send_mllp

    host, port = settings.hl7_destination.rsplit(":", 1)
    send_mllp(build_oru(report, hl7_message_id(report)), host, int(port), SEND_TIMEOUT_S)


def _send_fhir(report: StudyReport, settings: Settings) -> None:
    from gateway.outbox.fhir import build_fhir, post_fhir

    post_fhir(settings.fhir_url, build_fhir(report), SEND_TIMEOUT_S)


def _send_webhook(facts: dict[str, Any], settings: Settings) -> None:
    """POST our ids of the urgent study (its id and most suspicious slice), nothing else."""
    from gateway.outbox.webhook import notify

    if not notify(settings.notify_url, facts["top_scan_id"], study_id=facts["id"]):
        raise DeliveryError("the webhook did not answer 2xx in time", retryable=True)
