"""A ledger with every case retention must tell apart, made through the ledger's own writes.

`make_cases` returns the study ids of each case and the moment between the old studies and
the young one; a retention pass at `between + keep days` finds the old ones expired and the
young one not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from imaging.identity import DicomIdentity
from ledger import deliveries, studies, worklist
from ledger import scans as ledger
from ledger.deliveries import Routing
from ledger.statements import deliveries as deliveries_table
from ledger.statements import results, scan_pixels, scans, urgent_cases
from ledger.statements import studies as studies_table
from ledger.studies import StudyRef
from schemas.model_card import ModelCard
from schemas.tables import utcnow

CARD = ModelCard(version="v1", created_at="2026-12-01T00:00:00Z", urgent_threshold=0.5)
ROUTING = Routing(every=("hl7",))
PATIENT_MODULES = '{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}}'


@dataclass(frozen=True)
class Cases:
    """Study ids per case; `purgeable` are the old ones nothing keeps."""

    purgeable: list[str]  # decided, sent, not urgent or acknowledged
    acknowledged: str  # urgent, acknowledged, sent, with a saliency map: purgeable too
    open_case: str  # urgent, on the worklist, not acknowledged
    unlisted: str  # urgent, its escalation never reached the worklist
    unsent: str  # decided, its delivery still pending
    undecided: str  # closed, a slice still queued
    young: str  # decided after `between`
    between: datetime


def instances(study_uid: str, count: int) -> list[ledger.NewScan]:
    made = []
    for number in range(count):
        identity = DicomIdentity(
            study_uid=study_uid,
            series_uid=f"{study_uid}.1",
            sop_uid=f"{study_uid}.1.{number}",
            accession=f"ACC-{study_uid}",
            patient_id="P1",
            modality="CT",
            instance_number=number,
            slice_position=float(number),
        )
        ref = StudyRef(
            study_uid, identity.accession, identity.patient_id, patient_modules=PATIENT_MODULES
        )
        made.append(
            ledger.NewScan(
                str(uuid.uuid4()), bytes([number % 256]) * 4096, identity.accession, "f", ref,
                identity,
            )
        )  # fmt: skip
    return made


def add_study(engine: Engine, slices: int, p2: float, finished: int | None = None) -> str:
    """A study of `slices` slices, `finished` of them classified (all by default) with P(2)
    `p2` on the first slice; decided (with an hl7 delivery) once all are. Returns its id."""
    uid = f"1.2.{uuid.uuid4().int % 10**12}"
    ids = ledger.add_scans(engine, instances(uid, slices), "routine").new
    done = ids[: slices if finished is None else finished]
    ledger.claim(engine, done, max_attempts=3)
    scored = [
        ledger.ScoredScan(sid, (1 - p, 0.0, p), 2 if p >= 0.5 else 0, p >= 0.5)
        for index, sid in enumerate(done)
        for p in [p2 if index == 0 else 0.1]
    ]
    ledger.record_results(engine, scored, "v1", "/m", 0.5, {})
    escalations = studies.decide_ready(engine, done, CARD, "v1", ROUTING)
    with engine.begin() as connection:
        study_id = connection.execute(
            sa.select(scans.c.study_id).where(scans.c.id == ids[0])
        ).scalar_one()
    if escalations:
        studies.store_saliency(engine, study_id, escalations[0].scan_id, bytes(4096))
    return study_id


def deliver_all(engine: Engine, study_id: str) -> None:
    for row in deliveries.list_deliveries(engine):
        if row["study_id"] == study_id:
            deliveries.mark_delivered(engine, row["id"])


def escalate(engine: Engine, study_id: str) -> None:
    """Put an urgent study on the worklist as the urgent worker does."""
    row = studies.study_row(engine, study_id)
    assert row is not None and row["urgent"]
    (escalation,) = worklist.unescalated(engine, [str(row["top_scan_id"])])
    worklist.add_urgent_cases(engine, [escalation])


def make_cases(engine: Engine, plain: int = 3, slices: int = 4) -> Cases:
    """`plain` purgeable studies of `slices` slices, and one study of each other case."""
    purgeable = [add_study(engine, slices, 0.1) for _ in range(plain)]
    for sid in purgeable:
        deliver_all(engine, sid)
    acknowledged = add_study(engine, slices, 0.9)
    escalate(engine, acknowledged)
    deliver_all(engine, acknowledged)
    row = studies.study_row(engine, acknowledged)
    assert (
        row is not None
        and worklist.acknowledge(engine, str(row["study_uid"]), "tester") is not None
    )
    open_case = add_study(engine, slices, 0.9)
    escalate(engine, open_case)
    deliver_all(engine, open_case)
    unlisted = add_study(engine, slices, 0.9)
    deliver_all(engine, unlisted)
    unsent = add_study(engine, slices, 0.1)
    undecided = add_study(engine, slices, 0.1, finished=slices - 1)
    between = utcnow()
    young = add_study(engine, slices, 0.1)
    deliver_all(engine, young)
    return Cases(purgeable, acknowledged, open_case, unlisted, unsent, undecided, young, between)


def _rows(connection: sa.Connection, table: sa.Table, *leave_out: str) -> list[dict[str, Any]]:
    columns = [column for column in table.c if column.name not in leave_out]
    key = list(table.primary_key.columns)
    query = sa.select(*columns).order_by(*key)
    return [dict(row._mapping) for row in connection.execute(query)]


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every row retention may not touch (pixels and saliency apart), and who holds what."""
    with engine.begin() as connection:
        taken = {
            "scans": _rows(connection, scans),
            "results": _rows(connection, results),
            "studies": _rows(connection, studies_table, "saliency"),
            "urgent_cases": _rows(connection, urgent_cases),
            "deliveries": _rows(connection, deliveries_table),
        }
        taken["pixels"] = {
            row.scan_id: row.pixels
            for row in connection.execute(sa.select(scan_pixels.c.scan_id, scan_pixels.c.pixels))
        }
        taken["saliency"] = set(
            connection.execute(
                sa.select(studies_table.c.id).where(studies_table.c.saliency.is_not(None))
            ).scalars()
        )
    return taken


def scans_of(engine: Engine, study_ids: list[str]) -> set[str]:
    with engine.begin() as connection:
        query = sa.select(scans.c.id).where(scans.c.study_id.in_(study_ids))
        return set(connection.execute(query).scalars())
