"""Results back into the hospital, with real receivers that are down at first and up later.

dcmtk's storescp is the PACS (the SR read back with dsrdump, the key image with pydicom), a
socket MLLP listener the RIS (answering AE once, then AA), a local HTTP server the FHIR
server. Real Redis, SQLite, and routine, urgent and deliveries worker processes.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import sqlalchemy as sa

from gateway.intake.client import submit_images
from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Delivery, Study
from testkit import peers
from testkit.peers import Fhir, Ris, start_receivers
from testkit.services import free_port
from tests.fixtures_model import brightness_scans
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def ports() -> dict[str, int]:
    return {"pacs": free_port(), "ris": free_port(), "fhir": free_port()}


def test_every_destination_down_at_first_gets_each_message_exactly_once(
    pipeline_factory, tmp_path: Path, ports: dict[str, int]
) -> None:
    peers.reset()
    Ris.refuse_first = True
    env = {
        "TRIAGE_DICOM_DESTINATION": f"PACS@127.0.0.1:{ports['pacs']}",
        "TRIAGE_HL7_DESTINATION": f"127.0.0.1:{ports['ris']}",
        "TRIAGE_FHIR_URL": f"http://127.0.0.1:{ports['fhir']}/fhir",
        "TRIAGE_RECONCILE_EVERY_SECONDS": "2",
    }
    pipeline = pipeline_factory(f"sqlite:///{tmp_path / 'ledger.db'}", batch_size=8, env=env)
    pipeline.start_worker("urgent", "urgent")
    pipeline.start_worker("stat,scans", "routine")
    pipeline.start_worker("deliveries", "deliveries")
    engine = engine_for(get_settings().resolved_database_url)
    # two urgent and two calm studies of one slice each
    submission = submit_images(brightness_scans([230, 40, 240, 60], seed=5))
    assert len(submission.queued) == 4

    def tried_everywhere() -> bool:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(Delivery.channel, Delivery.attempts)).all()
        # an SR per study, a key image per urgent one, a FHIR report per study, an ORU per urgent
        return len(rows) == 4 + 2 + 4 + 2 and all(attempts >= 1 for _, attempts in rows)

    wait_for(tried_everywhere, "every delivery tried while the receivers are down", 120)
    pacs_dir = tmp_path / "pacs"
    with start_receivers(ports, pacs_dir):
        wait_for(lambda: _delivered(engine) == 12, "every delivery delivered", timeout=150)
        time.sleep(3)  # let a stray duplicate arrive, if the design allowed one
        check_pacs(pacs_dir, engine)
        assert len(Ris.received) == 2 and len(Ris.refused_once) == 1  # urgent only; AE retried
        assert len({m.split("\r")[0].split("|")[9] for m in Ris.received}) == 2
        assert len(Fhir.bodies) == 4 and all(b"not a diagnosis" in body for body in Fhir.bodies)


def _delivered(engine) -> int:  # noqa: ANN001
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).where(Delivery.status == "delivered"))


def check_pacs(folder: Path, engine, studies: int = 4, urgent_studies: int = 2) -> None:  # noqa: ANN001
    """One SR per study, one key image (with its overlay) per urgent study, nothing twice."""
    files = sorted(path for path in folder.iterdir() if path.is_file())
    datasets = [pydicom.dcmread(path) for path in files]
    srs = [ds for ds in datasets if ds.Modality == "SR"]
    images = [ds for ds in datasets if ds.Modality != "SR"]
    with engine.connect() as connection:
        urgent = connection.scalar(sa.select(sa.func.count()).where(Study.urgent.is_(True)))
    assert len(srs) == studies and len(images) == urgent == urgent_studies
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)  # exactly once each
    for path, ds in zip(files, datasets, strict=True):
        if ds.Modality == "SR":
            text = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True).stdout
            assert "not a diagnosis" in text
    for image in images:
        pixels = image.pixel_array.astype(int)
        assert image.PhotometricInterpretation == "RGB" and pixels.ndim == 3
        # the overlay colours the slice: grey pixels have equal channels, overlaid ones do not
        assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 40


def test_a_study_sent_by_storescu_reaches_the_pacs_and_the_ris_that_came_up_late(
    pipeline_factory, tmp_path: Path, ports: dict[str, int]
) -> None:
    """The acceptance flow: storescu -> triage receive -> workers -> a decided study -> its SR
    and key image in storescp's folder and its ORU at the listener, both down until after
    the study was classified."""
    from tests.integration.test_dicom_receiver import (
        URGENT,
        ReceiverProcess,
        storescu,
        wait_decided,
        write_study,
    )

    peers.reset()
    Ris.refuse_first = False
    env = {
        "TRIAGE_STUDY_IDLE_SECONDS": "1",
        "TRIAGE_DICOM_DESTINATION": f"PACS@127.0.0.1:{ports['pacs']}",
        "TRIAGE_HL7_DESTINATION": f"127.0.0.1:{ports['ris']}",
    }
    pipeline = pipeline_factory(f"sqlite:///{tmp_path / 'ledger.db'}", batch_size=8, env=env)
    pipeline.start_worker("urgent", "urgent")
    pipeline.start_worker("stat,scans", "routine")
    pipeline.start_worker("deliveries", "deliveries")
    receiver = ReceiverProcess(pipeline, free_port())
    uid = "1.2.826.0.1.3680043.99.1"
    try:
        assert storescu(receiver.port, write_study(tmp_path / "exam", uid, 5, URGENT)) == 0
        decided = wait_decided(uid, slices=5)
        assert decided["urgent"] is True
        engine = engine_for(get_settings().resolved_database_url)
        wait_for(lambda: _count_tried(engine) == 3, "every delivery tried while down", 60)
        with start_receivers(ports, tmp_path / "pacs"):
            wait_for(lambda: _delivered(engine) == 3, "the SR, key image and ORU delivered", 120)
            stored = [pydicom.dcmread(path) for path in (tmp_path / "pacs").iterdir()]
            from pydicom.uid import SecondaryCaptureImageStorage

            classes = sorted(str(ds.SOPClassUID) for ds in stored)
            assert len(stored) == 2 and SecondaryCaptureImageStorage in classes
            assert [ds for ds in stored if ds.Modality == "SR"]  # and the report
            assert {ds.StudyInstanceUID for ds in stored} == {uid}  # inside the hospital's study
            (oru,) = Ris.received
            assert "ORU^R01" in oru
    finally:
        receiver.kill()


def _count_tried(engine) -> int:  # noqa: ANN001
    with engine.connect() as connection:
        return connection.scalar(
            sa.select(sa.func.count()).where(Delivery.attempts >= 1, Delivery.status == "pending")
        )


def test_an_urgent_study_whose_worker_died_after_the_decision_gets_its_key_image_later(
    pipeline_factory, tmp_path: Path, ports: dict[str, int]
) -> None:
    """The routine worker is SIGKILLed right after its job's decision commit, before its key
    image render could run (the render job it published is dropped with it). The SRs reach
    the PACS at once, with no model worker alive; the key image waits (never retried with
    backoff), the reconciler (the urgent worker's beat) publishes the render again, and once
    a model worker is back the key image reaches the PACS, once."""
    env = {
        "TRIAGE_DICOM_DESTINATION": f"PACS@127.0.0.1:{ports['pacs']}",
        "TRIAGE_RECONCILE_EVERY_SECONDS": "1",
    }
    pipeline = pipeline_factory(f"sqlite:///{tmp_path / 'ledger.db'}", batch_size=8, env=env)
    schedule = str(pipeline.directory / "beat-schedule")
    pipeline.start_worker("urgent", "urgent", extra_args=("-B", "-s", schedule))
    pipeline.start_worker("deliveries", "deliveries")
    # classification only (`scans`): the render job it publishes to `stat` stays in Redis
    routine = pipeline.start_worker("scans", "routine")
    engine = engine_for(get_settings().resolved_database_url)
    pacs_dir = tmp_path / "pacs"
    with start_receivers(ports, pacs_dir):
        submission = submit_images(brightness_scans([235, 45], seed=9))
        assert len(submission.queued) == 2
        wait_for(lambda: _decided(engine) == 2, "both studies decided", 120)
        routine.kill()  # the decision is committed; nothing after it ran on this worker
        pipeline.broker().delete("stat")  # its render job died with it
        wait_for(lambda: _delivered(engine) == 2, "both SRs delivered, no model worker alive")
        assert [ds.Modality for ds in _stored(pacs_dir)] == ["SR", "SR"]
        (key_image,) = _rows(engine, "key_image")
        assert (key_image.status, key_image.attempts) == ("waiting", 0)  # waits, no backoff
        wait_for(lambda: pipeline.queue_length("stat") >= 2, "renders re-published", 60)
        pipeline.start_worker("stat,scans", "routine-again")
        wait_for(lambda: _delivered(engine) == 3, "the key image delivered", 120)
        time.sleep(3)  # let a stray duplicate arrive, if the design allowed one
        check_pacs(pacs_dir, engine, studies=2, urgent_studies=1)
    (key_image,) = _rows(engine, "key_image")
    assert (key_image.status, key_image.attempts) == ("delivered", 1)


def test_an_urgent_study_the_reconciler_decided_reaches_the_pacs_with_its_key_image(
    pipeline_factory, tmp_path: Path, ports: dict[str, int]
) -> None:
    """Results in the ledger without a decision (a worker of the previous release died between
    the two), no model worker alive: the reconciler on the urgent worker decides the study, its
    SR goes at once, and its key image once a model worker is back."""
    from ledger import scans as ledger

    env = {
        "TRIAGE_DICOM_DESTINATION": f"PACS@127.0.0.1:{ports['pacs']}",
        "TRIAGE_RECONCILE_EVERY_SECONDS": "1",
    }
    pipeline = pipeline_factory(f"sqlite:///{tmp_path / 'ledger.db'}", batch_size=8, env=env)
    engine = engine_for(get_settings().resolved_database_url)
    (urgent,) = [scan_id for scan_id, _ in submit_images(brightness_scans([235], seed=3)).queued]
    ledger.claim(engine, [urgent], max_attempts=3)
    scored = [ledger.ScoredScan(urgent, (0.05, 0.05, 0.9), 2, True)]
    ledger.record_results(engine, scored, "v0", "/models/v0", 0.5, {})
    schedule = str(pipeline.directory / "beat-schedule")
    pipeline.start_worker("urgent", "urgent", extra_args=("-B", "-s", schedule))
    pipeline.start_worker("deliveries", "deliveries")
    pacs_dir = tmp_path / "pacs"
    with start_receivers(ports, pacs_dir):
        wait_for(lambda: _delivered(engine) == 1, "the reconciler decided, the SR delivered")
        assert [ds.Modality for ds in _stored(pacs_dir)] == ["SR"]
        assert [row.status for row in _rows(engine, "key_image")] == ["waiting"]
        pipeline.start_worker("stat,scans", "routine")
        wait_for(lambda: _delivered(engine) == 2, "the key image delivered", 120)
        time.sleep(3)  # let a stray duplicate arrive, if the design allowed one
        check_pacs(pacs_dir, engine, studies=1, urgent_studies=1)


def _decided(engine) -> int:  # noqa: ANN001
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).where(Study.status == "classified"))


def _rows(engine, channel: str) -> list:  # noqa: ANN001
    with engine.connect() as connection:
        return connection.execute(sa.select(Delivery).where(Delivery.channel == channel)).all()


def _stored(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path) for path in sorted(folder.iterdir()) if path.is_file()]
