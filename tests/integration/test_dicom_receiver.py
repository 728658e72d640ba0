"""Studies over the network: dcmtk's storescu/echoscu and pynetdicom against `triage receive`.

The receiver runs as a subprocess with the pipeline's environment (real Redis, SQLite or
PostgreSQL, worker processes with the brightness model) and TRIAGE_STUDY_IDLE_SECONDS=1.
Slices are 512x512 16-bit CT instances whose canonical scans have the brightness model's
test intensities, so each study's decision is known in advance.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.intake.receiver import CT
from ledger import reads
from ledger.database import engine_for
from ledger.statements import scans
from schemas.settings import get_settings
from testkit.dcmtk import echo, run_dcmtk, storescu
from testkit.services import free_port
from tests.gateway.intake.test_receiver import EXPLICIT_LE, ct_instance
from tests.integration.conftest import REPO_ROOT, Pipeline, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

if shutil.which("storescu") is None:
    if os.environ.get("TRIAGE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail("dcmtk is required (TRIAGE_TEST_REQUIRE_SERVICES=1) but storescu is missing")
    pytest.skip("dcmtk not installed (apt-get install dcmtk)", allow_module_level=True)

URGENT, HEALTHY = 200, 50  # canonical mean brightness: urgent / class 0 for the test model


class ReceiverProcess:
    """`python -m triage receive` as a subprocess, ready once echoscu is answered."""

    def __init__(self, pipeline: Pipeline, port: int, calling: str = "SENDER", **env: str) -> None:
        self.port = port
        self.log = (pipeline.directory / f"receiver-{port}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "triage", "-v", "receive", "--port", str(port),
             "--ae-title", "TRIAGE", "--grace", "10"],
            env={**pipeline.env, **env}, cwd=REPO_ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: self.alive() and echo(port, calling), "receiver", 60)

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"receiver exited with {self.process.returncode}")
        return True

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def write_study(folder: Path, study_uid: str, count: int, mean: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for number in range(1, count + 1):
        path = folder / f"slice-{number:03d}.dcm"
        ct_instance(study_uid, number, mean).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def jpeg_lossless(paths: Sequence[Path], folder: Path) -> list[Path]:
    """The same instances compressed by dcmtk (JPEG lossless, process 14 SV1)."""
    folder.mkdir(parents=True)
    compressed = [folder / path.name for path in paths]
    for source, target in zip(paths, compressed, strict=True):
        assert run_dcmtk("dcmcjpeg", str(source), str(target)) == 0
    return compressed


def studies_by_uid() -> dict[str, dict]:
    engine = engine_for(get_settings().resolved_database_url)
    return {row["study_uid"]: row for row in reads.list_studies(engine)}


def wait_decided(uid: str, slices: int, decisions: int = 1) -> dict:
    def decided() -> dict | None:
        row = studies_by_uid().get(uid)
        if row and row["status"] == "classified" and row["slices"] == slices:
            return row if decision_count(uid) == decisions else None
        return None

    wait_for(decided, f"study with {slices} slices classified", timeout=120)
    return studies_by_uid()[uid]


def decision_count(uid: str) -> int:
    from ledger.statements import studies

    engine = engine_for(get_settings().resolved_database_url)
    with engine.begin() as connection:
        query = sa.select(studies.c.decisions).where(studies.c.study_uid == uid)
        return int(connection.execute(query).scalar_one())


@pytest.fixture
def receiving(pipeline_factory, database_url: str) -> Iterator[tuple[Pipeline, ReceiverProcess]]:
    pipeline = pipeline_factory(database_url, env={"TRIAGE_STUDY_IDLE_SECONDS": "1"})
    pipeline.start_worker("urgent", "urgent")
    pipeline.start_worker("stat,scans", "routine")
    receiver = ReceiverProcess(pipeline, free_port())
    yield pipeline, receiver
    if receiver.process.poll() is None:
        receiver.kill()


def test_studies_sent_by_storescu_are_decided_once_each(
    receiving: tuple[Pipeline, ReceiverProcess], tmp_path: Path
) -> None:
    pipeline, receiver = receiving
    study_a = write_study(tmp_path / "a", "1.2.826.0.1.3680043.10.1", 6, URGENT)
    study_b = jpeg_lossless(
        write_study(tmp_path / "b", "1.2.826.0.1.3680043.10.2", 5, HEALTHY), tmp_path / "b-jpeg"
    )
    study_c = write_study(tmp_path / "c", "1.2.826.0.1.3680043.10.3", 4, URGENT)
    assert echo(receiver.port)  # (f)

    assert storescu(receiver.port, study_a) == 0  # (a) one study, one association
    row = wait_decided("1.2.826.0.1.3680043.10.1", 6)
    assert row["urgent"] is True

    # (b) two studies at once on two associations, one of them JPEG lossless
    senders = [
        threading.Thread(target=lambda: results.append(storescu(receiver.port, study_b, "-xs"))),
        threading.Thread(target=lambda: results.append(storescu(receiver.port, study_c))),
    ]
    results: list[int] = []
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=120)
    assert results == [0, 0]
    assert wait_decided("1.2.826.0.1.3680043.10.2", 5)["urgent"] is False
    assert wait_decided("1.2.826.0.1.3680043.10.3", 4)["urgent"] is True

    # (c) a whole study sent again: every instance is a repeat; nothing added or re-decided
    assert storescu(receiver.port, study_a) == 0
    listed = json.loads(pipeline.triage("studies", "--json").stdout)
    by_uid = {row["study_uid"]: row for row in listed}
    assert by_uid["1.2.826.0.1.3680043.10.1"]["slices"] == 6
    assert by_uid["1.2.826.0.1.3680043.10.1"]["status"] == "classified"
    assert decision_count("1.2.826.0.1.3680043.10.1") == 1
    urgent = json.loads(pipeline.triage("urgent", "--json").stdout)
    assert {case["study_uid"] for case in urgent} == {
        "1.2.826.0.1.3680043.10.1",
        "1.2.826.0.1.3680043.10.3",
    }
    assert receiver.terminate() == 0


def send_until_killed(
    port: int, datasets: Sequence[object], acknowledged: list[str], stop_after: int,
    receiver: ReceiverProcess,
) -> None:  # fmt: skip
    """pynetdicom as the sender: C-STORE in order, recording each instance answered 0x0000;
    the receiver is SIGKILLed while the instance after the `stop_after`-th is in flight."""
    from pynetdicom import AE

    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CT, [EXPLICIT_LE])
    association = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert association.is_established
    killer = None
    for dataset in datasets:
        if len(acknowledged) == stop_after:
            killer = threading.Timer(0.005, lambda: os.kill(receiver.process.pid, signal.SIGKILL))
            killer.start()
        status = association.send_c_store(dataset) if association.is_established else None
        if status is not None and getattr(status, "Status", None) == 0x0000:
            acknowledged.append(str(dataset.SOPInstanceUID))
        elif killer is not None:
            break
    if association.is_established:
        association.abort()
    if killer is not None:
        killer.join()


def test_a_killed_receiver_keeps_every_acknowledged_instance(
    pipeline_factory, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    pipeline = pipeline_factory(database_url, env={"TRIAGE_STUDY_IDLE_SECONDS": "1"})
    study_uid = "1.2.826.0.1.3680043.10.4"
    datasets = [ct_instance(study_uid, number, URGENT) for number in range(1, 13)]
    receiver = ReceiverProcess(pipeline, free_port())
    acknowledged: list[str] = []
    send_until_killed(receiver.port, datasets, acknowledged, 3, receiver)
    receiver.process.wait(timeout=10)
    assert receiver.process.returncode == -signal.SIGKILL
    assert 3 <= len(acknowledged) < len(datasets)
    with engine_for(database_url).begin() as connection:
        stored = set(connection.execute(sa.select(scans.c.sop_uid)).scalars())
    assert set(acknowledged) <= stored  # (d) nothing acknowledged is lost

    pipeline.start_worker("urgent", "urgent")
    pipeline.start_worker("stat,scans", "routine")
    restarted = ReceiverProcess(pipeline, free_port())
    try:
        retry: list[str] = []
        send_until_killed(restarted.port, datasets, retry, len(datasets) + 1, restarted)
        assert len(retry) == len(datasets)  # the sender's retry: repeats are success too
        assert wait_decided(study_uid, len(datasets))["urgent"] is True
    finally:
        restarted.terminate()


def test_an_unknown_calling_ae_is_refused(pipeline_factory, tmp_path: Path) -> None:
    pipeline = pipeline_factory(f"sqlite:///{tmp_path / 'ledger.db'}")
    receiver = ReceiverProcess(
        pipeline, free_port(), calling="PACS1", TRIAGE_DICOM_ALLOWED_AES="PACS1,CT01"
    )
    try:
        slices = write_study(tmp_path / "e", "1.2.826.0.1.3680043.10.5", 1, URGENT)
        assert not echo(receiver.port, "OTHER")  # (e)
        assert storescu(receiver.port, slices, calling="OTHER") != 0
        assert echo(receiver.port, "CT01")
        assert storescu(receiver.port, slices, calling="CT01") == 0
    finally:
        assert receiver.terminate() == 0
