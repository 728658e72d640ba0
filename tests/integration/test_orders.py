"""The RIS's orders through the whole system: a real `triage orders` process, a real `triage
receive` fed by dcmtk's storescu, real Redis and real workers. A STAT order puts its study on
the `stat` queue and ahead on the worklist, also when it arrives after the study; a cancelled
one's study is never classified nor reported; bad frames get their answers and the listener
keeps going."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.intake.client import submit_scans
from gateway.outbox.hl7 import build_oru
from gateway.outbox.mllp import START, frame, send_mllp
from gateway.outbox.sending import study_report
from ledger import deliveries, reads
from ledger.database import engine_for
from schemas.settings import get_settings
from schemas.tables import Delivery, Scan
from testkit.services import free_port
from tests.gateway.intake.order_feed import err_text, exchange, msa, order_message
from tests.integration.conftest import REPO_ROOT, Pipeline, wait_for
from tests.integration.test_dicom_receiver import ReceiverProcess, storescu, write_study

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
MAX_BYTES = 8192


@pytest.fixture
def pipeline(pipeline_factory, tmp_path: Path) -> Pipeline:
    # an RIS for the ORUs that nobody serves: the outbox rows are written, never sent
    return pipeline_factory(
        f"sqlite:///{tmp_path / 'ledger.db'}",
        batch_size=8,
        env={
            "TRIAGE_HL7_DESTINATION": "127.0.0.1:9",
            "TRIAGE_HL7_MAX_MESSAGE_BYTES": str(MAX_BYTES),
            "TRIAGE_HL7_READ_TIMEOUT_SECONDS": "2",
        },
    )


@pytest.fixture
def orders_port(pipeline: Pipeline) -> Iterator[int]:
    """A real `triage orders` process for this pipeline, accepting on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "triage", "orders", "--host", "127.0.0.1", "--port"]
    log = (pipeline.directory / "orders.log").open("w")
    process = subprocess.Popen(
        [*command, str(port)], env=pipeline.env, cwd=REPO_ROOT, stdout=log, stderr=log
    )

    def accepting() -> bool:
        assert process.poll() is None, (pipeline.directory / "orders.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(accepting, "`triage orders` to accept", timeout=60)
    yield port
    process.terminate()
    process.wait(timeout=30)
    log.close()


def send_order(port: int, text: str) -> float:
    """Send one order with our MLLP client (DeliveryError unless AA for its MSH-10); seconds
    from sending to the ACK."""
    started = time.perf_counter()
    send_mllp(text, "127.0.0.1", port, timeout=30)
    return time.perf_counter() - started


def scan_priorities(engine, accession: str) -> list[tuple[str, str]]:  # noqa: ANN001
    query = sa.select(Scan.priority, Scan.status).where(Scan.accession == accession)
    with engine.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(query))


def study_uid(number: int) -> str:
    """A StudyInstanceUID whose test instances carry the accession ACC<number>."""
    return f"1.2.826.0.1.3680043.8.498.{number}"


def exam(folder: Path, number: int, brightness: int) -> str:
    """A DICOM study of two slices, submitted from files as routine work; its accession."""
    write_study(folder / str(number), study_uid(number), 2, brightness)
    submit_scans([folder / str(number)])
    return f"ACC{number}"


def bad_frames(port: int) -> dict[str, str]:
    """What the listener answers to each kind of bad input: MSA-1 and ERR-8."""
    garbage = frame("this is not HL7")
    no_orc = frame("MSH|^~\\&|RIS|HOSP|TRIAGE|HOSP|2026||ORM^O01|BAD-2|P|2.5\rPID|1||X\r")
    oversized = frame(order_message("BAD-3", "ACC-X") + "NTE|1||" + "x" * MAX_BYTES + "\r")
    truncated = START + order_message("BAD-4", "ACC-X").encode()[:90]
    answers = {}
    for name, payload in [
        ("not HL7", garbage),
        ("no ORC", no_orc),
        ("oversized", oversized),
        ("truncated", truncated),
    ]:
        ack = exchange(port, payload)
        answers[name] = f"{msa(ack)[0]}: {err_text(ack)}"
    return answers


def test_stat_and_cancelled_orders_steer_their_studies(
    pipeline: Pipeline, orders_port: int, tmp_path: Path
) -> None:
    engine = engine_for(get_settings().resolved_database_url)
    stat, cancelled, routine, late = "ACC100001", "ACC100002", "ACC100003", "ACC100004"
    latency = {"NW stat": send_order(orders_port, order_message("ORD-1", stat))}
    send_order(orders_port, order_message("ORD-2", cancelled, priority="R"))
    latency["CA"] = send_order(orders_port, order_message("ORD-3", cancelled, control="CA"))
    latency["repeat"] = send_order(orders_port, order_message("ORD-1", stat))

    assert exam(tmp_path, 100003, 250) == routine  # brighter: a higher P(2) than the stat ones
    assert pipeline.queue_length("scans") == 1 and pipeline.queue_length("stat") == 0
    receiver = ReceiverProcess(pipeline, free_port(), TRIAGE_STUDY_IDLE_SECONDS="1")
    try:
        slices = write_study(tmp_path / "stat", study_uid(100001), 2, 200)
        assert storescu(receiver.port, slices) == 0
        wait_for(lambda: pipeline.queue_length("stat") == 1, "the STAT study's job on stat")
    finally:
        receiver.terminate()
    assert scan_priorities(engine, stat) == [("stat", "queued")] * 2
    assert pipeline.queue_length("scans") == 1
    exam(tmp_path, 100002, 240)
    assert scan_priorities(engine, cancelled) == [("routine", "failed")] * 2
    # an order that arrives after its study: the waiting slices move to stat
    exam(tmp_path, 100004, 200)
    assert pipeline.queue_length("scans") == 2
    latency["NW stat after its study"] = send_order(orders_port, order_message("ORD-4", late))
    assert pipeline.queue_length("stat") == 2  # re-published on stat before the ACK
    assert scan_priorities(engine, late) == [("stat", "queued")] * 2
    answers = bad_frames(orders_port)
    latency["after the bad frames"] = send_order(orders_port, order_message("ORD-5", "ACC9"))

    pipeline.start_worker("urgent", "urgent", TRIAGE_MODEL_DIR=str(pipeline.directory / "none"))
    pipeline.start_worker("stat,scans", "routine")
    wait_for(lambda: len(reads.worklist(engine)) == 3, "three urgent studies on the worklist")
    listed = reads.worklist(engine)
    assert [case["accession"] for case in listed][2] == routine
    assert {case["accession"] for case in listed[:2]} == {stat, late}
    assert listed[2]["p2"] > max(case["p2"] for case in listed[:2])  # ahead by priority alone
    by_accession = {row["accession"]: row for row in reads.list_studies(engine)}
    stopped = by_accession[cancelled]
    assert (stopped["status"], stopped["order_note"], stopped["p2"]) == (
        "failed",
        "order cancelled",
        None,
    )
    with engine.connect() as connection:
        reported = set(connection.scalars(sa.select(Delivery.study_id)))
    assert stopped["study_id"] not in reported
    assert by_accession[stat]["study_id"] in reported
    facts = deliveries.report_facts(engine, by_accession[stat]["study_id"])
    oru = build_oru(study_report(facts, {"decision": 1}), "ORU-1")
    assert f"|RE|PL-{stat}|FI-{stat}|" in oru  # ORC-2, ORC-3: the order as received
    assert all(answer.startswith("AR: ") for answer in answers.values())
    print(json.dumps({"ack_seconds": latency, "bad_frames": answers}, indent=1))  # noqa: T201
