"""The outbox: what goes back to the hospital about each study decision.

    routing.py    which channels a decision goes to (from the settings)
    sending.py    send one claimed outbox row: the facts from the ledger, then its channel
    report.py     StudyReport (one decision), DeliveryError (retryable or not), NotReady
    dicom_sr.py   build_sr: the decision as a Comprehensive SR (TID 1500) in the study
    key_image.py  build_key_image: the most suspicious slice with its saliency, Secondary
                  Capture (a delivery of its own); key_image_reference: its UIDs, for the SR
    cstore.py     send_cstore: C-STORE datasets to 'AET@host:port' (pynetdicom)
    hl7.py        build_oru: HL7 v2.5 ORU^R01 (hl7apy)
    mllp.py       send_mllp / send_mllp_many: MLLP client checking MSA-1 and MSA-2
    fhir.py       build_fhir / post_fhir: a transaction Bundle of conditional creates
    webhook.py    notify: POST our ids of an urgent study to TRIAGE_NOTIFY_URL

The channel modules are plain functions with no database or queue: `sending` calls them, the
deliver task retries what raises DeliveryError(retryable=True), puts a row back to waiting on
NotReady (a key image whose saliency map is missing), and gives up on the rest. Every
identifier a receiver can deduplicate on (SOPInstanceUID, MSH-10, FHIR identifier) is derived
from the decision, so a retry after a lost answer is the same object.
"""
