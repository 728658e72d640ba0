"""The key image's own delivery against a real ledger (SQLite and PostgreSQL) and a real PACS
(dcmtk's storescp): the SR goes out as soon as the study is decided, the key image once a
model worker has rendered its saliency map (worker/rendering.py), and a key image that cannot
be sent waits or fails, never retries with backoff."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa

from ledger import deliveries, studies
from ledger import scans as ledger
from ledger.database import create_ledger_engine, upgrade_schema
from ledger.deliveries import Routing
from ledger.statements import deliveries as outbox_rows
from ledger.statements import scan_pixels
from schemas.messages import Escalation
from schemas.settings import get_settings
from testkit.peers import start_receivers
from testkit.services import free_port
from tests.fixtures_model import brightness_scans
from worker.delivering import deliver
from worker.model import current_model
from worker.rendering import NO_PIXELS, render_saliency
from worker.tasks import classify_scans

ROUTING = Routing(every=("dicom",), urgent_only=("key_image",))
needs_dcmtk = pytest.mark.skipif(
    shutil.which("storescp") is None, reason="dcmtk is not installed: apt-get install dcmtk"
)


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - Engine
    monkeypatch.setenv("TRIAGE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    engine = create_ledger_engine(database_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


def decide(engine, means: list[int]) -> tuple[list[str], list[Escalation]]:  # noqa: ANN001
    """Each mean a one-slice study, classified and decided with the DICOM routing."""
    new = [
        ledger.NewScan(str(uuid.uuid4()), scan.tobytes(), None, f"file{i}.png")
        for i, scan in enumerate(brightness_scans(means, seed=len(means)))
    ]
    ledger.add_scans(engine, new, "routine")
    ids = [scan.scan_id for scan in new]
    sent: list[Escalation] = []
    classify_scans(engine, ids, current_model(get_settings()), 3, sent.append, routing=ROUTING)
    return ids, sent


def outbox(engine) -> dict[tuple[str, str], dict]:  # noqa: ANN001
    return {(row["study_id"], row["channel"]): row for row in deliveries.list_deliveries(engine)}


def sop_uids(folder: Path) -> dict[str, pydicom.Dataset]:
    return {
        (ds := pydicom.dcmread(path)).SOPInstanceUID: ds
        for path in folder.iterdir()
        if path.is_file()
    }


def evidence_uids(sr: pydicom.Dataset) -> set[str]:
    return {
        sop.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for sop in series.ReferencedSOPSequence
    }


@needs_dcmtk
def test_the_sr_goes_at_once_and_the_key_image_once_its_saliency_is_rendered(
    engine,  # noqa: ANN001
    model_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports = {"pacs": free_port(), "ris": free_port(), "fhir": free_port()}
    monkeypatch.setenv("TRIAGE_DICOM_DESTINATION", f"PACS@127.0.0.1:{ports['pacs']}")
    get_settings.cache_clear()
    _, sent = decide(engine, [230, 40])
    (urgent_study,) = [e.study_id for e in sent]
    rows = outbox(engine)
    assert sorted(channel for _, channel in rows) == ["dicom", "dicom", "key_image"]
    key_row = rows[(urgent_study, "key_image")]
    assert key_row["status"] == "waiting"
    folder = tmp_path / "pacs"
    with start_receivers(ports, folder):
        # no model worker has rendered anything yet: both SRs go, the key image is not due
        for (_, channel), row in rows.items():
            expected = "delivered" if channel == "dicom" else "not due"
            assert deliver.apply(args=[row["id"]]).get() == expected
        received = sop_uids(folder)
        assert [ds.Modality for ds in received.values()] == ["SR", "SR"]
        assert studies.study_row(engine, urgent_study)["saliency"] is None

        due = render_saliency(engine, current_model(get_settings()), urgent_study)
        assert (
            due == [key_row["id"]] and outbox(engine)[(urgent_study, "key_image")]["attempts"] == 0
        )
        assert deliver.apply(args=[key_row["id"]]).get() == "delivered"
        received = sop_uids(folder)
    assert len(received) == 3
    (image,) = [ds for ds in received.values() if ds.Modality != "SR"]
    named = [
        sr
        for sr in received.values()
        if sr.Modality == "SR" and "CurrentRequestedProcedureEvidenceSequence" in sr
    ]
    # the urgent study's SR, sent first, names the key image that came after it
    assert len(named) == 1 and evidence_uids(named[0]) == {image.SOPInstanceUID}
    stored = studies.study_row(engine, urgent_study)["saliency"]
    assert stored is not None and len(stored) == 64 * 64
    # idempotent: a second render job only finds nothing left to send
    assert render_saliency(engine, current_model(get_settings()), urgent_study) == []
    assert studies.study_row(engine, urgent_study)["saliency"] == stored


def test_a_key_image_claimed_without_its_saliency_waits_instead_of_retrying(
    engine,  # noqa: ANN001
    model_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIAGE_DICOM_DESTINATION", f"PACS@127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    _, sent = decide(engine, [230])
    key_row = outbox(engine)[(sent[0].study_id, "key_image")]
    with engine.begin() as connection:  # released by hand while its map is missing
        connection.execute(
            outbox_rows.update().where(outbox_rows.c.id == key_row["id"]).values(status="pending")
        )
    assert deliver.apply(args=[key_row["id"]]).get() == "waiting"
    after = outbox(engine)[(sent[0].study_id, "key_image")]
    assert after["status"] == "waiting" and "saliency map is not stored" in after["last_error"]
    assert deliveries.due(engine, after["next_attempt_at"], 10) == [
        outbox(engine)[(sent[0].study_id, "dicom")]["id"]
    ]  # only the SR is due: the key image waits for the reconciler, not for a backoff


def test_a_key_image_whose_slice_has_no_usable_pixels_fails_with_the_reason(
    engine,  # noqa: ANN001
    model_root: Path,
) -> None:
    ids, sent = decide(engine, [230])
    with engine.begin() as connection:
        connection.execute(
            scan_pixels.update().where(scan_pixels.c.scan_id == ids[0]).values(pixels=b"short")
        )
    assert render_saliency(engine, current_model(get_settings()), sent[0].study_id) == []
    row = outbox(engine)[(sent[0].study_id, "key_image")]
    assert (row["status"], row["last_error"]) == ("failed", NO_PIXELS)
    with engine.connect() as connection:
        waiting = sa.select(sa.func.count()).where(outbox_rows.c.status == "waiting")
        assert connection.scalar(waiting) == 0
