"""Results back into the hospital: payload builders and senders, one per channel.

    report.py     StudyReport (one decision), DeliveryError (retryable or not)
    dicom_sr.py   build_sr: the decision as a Comprehensive SR (TID 1500) in the study
    key_image.py  build_key_image: the most suspicious slice with its saliency, Secondary Capture
    cstore.py     send_cstore: C-STORE datasets to 'AET@host:port' (pynetdicom)
    hl7.py        build_oru: HL7 v2.5 ORU^R01 (hl7apy)
    mllp.py       send_mllp / send_mllp_many: MLLP client checking MSA-1 and MSA-2
    fhir.py       build_fhir / post_fhir: a transaction Bundle of conditional creates

Plain functions with no database or queue: the outbox calls them, retries what raises
DeliveryError(retryable=True), and gives up on the rest. Every identifier a receiver can
deduplicate on (SOPInstanceUID, MSH-10, FHIR identifier) is derived from the decision, so a
retry after a lost answer is the same object.
"""

from gateway.deliveries.cstore import send_cstore
from gateway.deliveries.dicom_sr import build_sr
from gateway.deliveries.fhir import build_fhir, post_fhir
from gateway.deliveries.hl7 import build_oru
from gateway.deliveries.key_image import build_key_image
from gateway.deliveries.mllp import send_mllp, send_mllp_many
from gateway.deliveries.report import DeliveryError, StudyReport, hl7_message_id

__all__ = [
    "DeliveryError",
    "StudyReport",
    "build_fhir",
    "build_key_image",
    "build_oru",
    "build_sr",
    "hl7_message_id",
    "post_fhir",
    "send_cstore",
    "send_mllp",
    "send_mllp_many",
]
