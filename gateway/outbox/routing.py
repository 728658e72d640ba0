"""Which channels a study decision goes to, from the settings (the ledger writes one outbox
row per channel in the decision's transaction)."""

from __future__ import annotations

from ledger.deliveries import DICOMWEB_KEY_IMAGE, KEY_IMAGE, Routing
from schemas.settings import Settings


def routing(settings: Settings) -> Routing:
    """The channels configured: the DICOM SR and FHIR for every decided study, the DICOM key
    image for urgent ones (each by C-STORE, and by STOW-RS to TRIAGE_DICOMWEB_DESTINATION), HL7 for urgent ones (or every study with TRIAGE_HL7_ALL_STUDIES),
    the webhook for urgent ones."""
    every: list[str] = []
    urgent_only: list[str] = []
    if settings.dicom_destination:
        every.append("dicom")
        urgent_only.append(KEY_IMAGE)
    if settings.dicomweb_destination:
        every.append("dicomweb")
        urgent_only.append(DICOMWEB_KEY_IMAGE)
    if settings.fhir_url:
        every.append("fhir")
    if settings.hl7_destination:
        (every if settings.hl7_all_studies else urgent_only).append("hl7")
    if settings.notify_url:
        urgent_only.append("webhook")
    return Routing(tuple(every), tuple(urgent_only))


def sends_key_images(settings: Settings) -> bool:
    """Whether urgent studies get a key image (a PACS by C-STORE or STOW-RS is set), so
    their saliency maps are rendered."""
    return bool(settings.dicom_destination or settings.dicomweb_destination)
