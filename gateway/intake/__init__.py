"""Intake: what the hospital sends, into the ledger and onto the broker.

files.py         paths and arrays -> IncomingScan (decoding is imaging/'s)
client.py        submit_scans / admit: ledger rows, then jobs on the broker
receiver.py      the DICOM C-STORE / C-ECHO SCP (`triage receive`)
study_closer.py  closes a study once no instance has come for the idle time
"""
