"""The hospital edge, in three rooms and one set of operations reads:

    intake/      what the hospital sends: files and arrays (files.py), the Python client
                 (client.py), the DICOM C-STORE receiver (receiver.py) and its idle-study
                 closer (study_closer.py)
    broker/      the message broker: the embedded Redis, its URL and queue depths (server.py),
                 jobs published by task name (publish.py)
    outbox/      what goes back: which channels a decision goes to (routing.py), sending one
                 outbox row (sending.py), and every channel's builder and sender (DICOM SR and
                 key image by C-STORE, HL7 ORU over MLLP, FHIR, the webhook)
    operations/  what operators read: the snapshot of queues and ledger (monitor.py) and the
                 Prometheus endpoint (metrics.py)
    tls.py       DICOM TLS for both directions: the receiver's and the sender's SSLContexts
                 (BCP 195), from the settings

The edge reads and writes the database through `ledger/` only, and publishes jobs without
importing the worker (the names are the contract in `schemas/queues.py`).
"""
