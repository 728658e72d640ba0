"""Studies written into a test ledger the way intake and a worker write them."""

from __future__ import annotations

import uuid

from imaging.identity import DicomIdentity
from ledger import scans as scan_ledger
from ledger import studies, worklist
from ledger.studies import StudyRef
from schemas.model_card import ModelCard

CARD = ModelCard(version="v1", created_at="2026-12-01T00:00:00Z", urgent_threshold=0.5)


def decided_study(
    engine,  # noqa: ANN001 - Engine
    study_uid: str,
    p2s: list[float],
    patient_name: str = "DOE^JANE",
    accession: str | None = None,
) -> str:
    """A study of len(p2s) slices, classified and decided (and on the worklist if urgent);
    returns its first scan's id."""
    accession = accession or f"ACC-{study_uid[-4:]}"
    new = []
    for number in range(len(p2s)):
        identity = DicomIdentity(
            study_uid=study_uid, series_uid=f"{study_uid}.1", sop_uid=f"{study_uid}.1.{number}",
            accession=accession, patient_id="PAT-1", modality="CT", instance_number=number,
            slice_position=float(number), patient_name=patient_name, study_date="20261202",
        )  # fmt: skip
        ref = StudyRef(
            study_uid, accession, "PAT-1", patient_name=patient_name, study_date="20261202"
        )
        pixels = bytes(range(256)) * 16
        new.append(scan_ledger.NewScan(str(uuid.uuid4()), pixels, accession, "f", ref, identity))
    ids = scan_ledger.add_scans(engine, new, "routine").new
    scan_ledger.claim(engine, ids, max_attempts=3)
    scored = [
        scan_ledger.ScoredScan(sid, (1 - p2, 0.0, p2), 2 if p2 >= 0.5 else 0, p2 >= 0.5)
        for sid, p2 in zip(ids, p2s, strict=True)
    ]
    scan_ledger.record_results(engine, scored, "v1", "/m", 0.5, CARD.model_dump())
    escalations = studies.decide_ready(engine, ids, CARD, "v1")
    worklist.add_urgent_cases(engine, escalations)
    return ids[0]
