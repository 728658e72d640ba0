"""Receive stage: DICOM instances per second from dcmtk's storescu, beside two references.

The same 512x512 16-bit CT instances (10 studies) go over one association from `storescu` to:

- `triage receive` on SQLite and on PostgreSQL: each instance decoded, reduced to its 64x64
  scan and committed to the ledger (held in its study) before it is answered 0x0000;
- dcmtk's `storescp` writing each instance to disk (the least a PACS does);
- a bare pynetdicom SCP that decodes each instance's pixels and keeps nothing (what pynetdicom
  and pydicom cost on their own: `python -m bench.receive --bare PORT`).

With workers (a routine and an urgent one, the benchmark's model), `run_study_latency`
times each study from the moment storescu has its last instance acknowledged to the study's
decision (`studies.classified_at`) and, for urgent ones, its worklist entry
(`urgent_cases.escalated_at`). That includes the idle timeout (IDLE_SECONDS) by design.

`python -m bench --receive-only` runs just this stage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from testkit.dcmtk import dcmtk_env, echo, storescu
from testkit.services import free_port, wait_until

INSTANCES = 200
SLICES_PER_STUDY = 20
LATENCY_STUDIES, LATENCY_SLICES, IDLE_SECONDS = 10, 10, 1.0
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def write_instances(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` CT slices (512x512, 12 bits stored in 16, HU with a lung window) as files."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    studies = [generate_uid() for _ in range(-(-count // SLICES_PER_STUDY))]
    paths = []
    for index in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = CT_STORAGE, EXPLICIT_LE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CT_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = studies[index // SLICES_PER_STUDY]
        ds.SeriesInstanceUID = generate_uid()
        ds.Modality, ds.InstanceNumber = "CT", index % SLICES_PER_STUDY + 1
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = -600, 1500
        ds.PixelData = rng.integers(0, 2000, (512, 512), dtype=np.uint16).tobytes()
        path = folder / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def send_all(port: int, folder: Path) -> float:
    """Seconds for storescu to send every file in `folder` on one association."""
    started = time.perf_counter()
    status = storescu(port, [folder], "+sd", calling="BENCH", timeout=600)
    if status != 0:
        raise RuntimeError(f"storescu exited with status {status} sending {folder}")
    return time.perf_counter() - started


def timed_peer(
    command: list[str], port: int, folder: Path, env: dict[str, str], log: Path
) -> float:
    """Start a receiving peer, wait until it answers C-ECHO, send everything, stop it."""
    with log.open("ab") as output:
        peer = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_until(
                lambda: peer.poll() is None and echo(port, calling="BENCH"),
                what=command[0],
                timeout=60,
            )
            return send_all(port, folder)
        finally:
            peer.terminate()
            peer.wait(timeout=60)


def triage_rate(database_url: str, folder: Path, count: int, directory: Path) -> float:
    """Instances per second into `triage receive` on this (empty) database."""
    import sqlalchemy as sa

    from ledger.database import create_ledger_engine, upgrade_schema
    from ledger.statements import scans

    engine = create_ledger_engine(database_url)
    upgrade_schema(engine)
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    env.update(
        TRIAGE_DATABASE_URL=database_url,
        TRIAGE_DATA_DIR=str(directory / "data"),
        TRIAGE_REDIS_URL="redis://127.0.0.1:9/0",  # studies stay open: nothing is published
        TRIAGE_STUDY_IDLE_SECONDS="3600",
    )
    command = [sys.executable, "-m", "triage", "receive", "--port", str(port), "--ae-title",
               "TRIAGE"]  # fmt: skip
    seconds = timed_peer(command, port, folder, env, directory / "receive.log")
    with engine.begin() as connection:
        stored = connection.execute(sa.select(sa.func.count()).select_from(scans)).scalar_one()
    engine.dispose()
    if stored != count:
        raise RuntimeError(f"the receiver stored {stored} of {count} instances")
    return count / seconds


def run_receive(directory: Path, database_urls: dict[str, str], count: int = INSTANCES) -> dict:
    """The stage's numbers: instances/s of each receiver and our ratio to the references."""
    folder = directory / "receive-instances"
    write_instances(folder, count)
    rates = {
        f"triage_{backend}": triage_rate(url, folder, count, directory)
        for backend, url in database_urls.items()
    }
    stored = directory / "storescp-out"
    stored.mkdir(parents=True, exist_ok=True)
    port = free_port()
    storescp = ["storescp", "-aet", "TRIAGE", "--output-directory", str(stored), str(port)]
    rates["storescp"] = count / timed_peer(
        storescp, port, folder, dcmtk_env(), directory / "storescp.log"
    )
    port = free_port()
    bare = [sys.executable, "-m", "bench.receive", "--bare", str(port)]
    rates["pynetdicom_bare"] = count / timed_peer(
        bare, port, folder, dict(os.environ), directory / "bare.log"
    )
    shutil.rmtree(stored, ignore_errors=True)
    ours = rates.get("triage_sqlite") or next(iter(rates.values()))
    return {
        "instances": count,
        "instance": "512x512 CT, 16-bit, explicit VR little endian, one association",
        "instances_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "ratios": {
            "triage_sqlite_over_storescp": round(ours / rates["storescp"], 3),
            "triage_sqlite_over_pynetdicom_bare": round(ours / rates["pynetdicom_bare"], 3),
        },
    }


def run_study_latency(env, backend: str, log_dir: Path) -> dict:  # noqa: ANN001 - BenchEnvironment
    """Last instance -> decision and -> worklist entry (ms, p50/p95/p99) over storescu."""
    from bench.pipeline import prepare
    from testkit.environment import worker_environment
    from testkit.workers import start_worker
    from worker.processes import stop_workers

    settings = env.settings(env.fresh_database(backend), study_idle_seconds=IDLE_SECONDS)
    prepare(settings)
    worker_env = worker_environment(settings)
    workers = []
    port = free_port()
    command = [sys.executable, "-m", "triage", "receive", "--port", str(port)]
    receiver = subprocess.Popen(
        command, env={**worker_env, "TRIAGE_STUDY_IDLE_SECONDS": str(IDLE_SECONDS)},
        stdout=(log_dir / f"receive-{backend}.log").open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for queues, name in (("stat,scans", "routine"), ("urgent", "urgent")):
            workers.append(start_worker("worker", queues, f"rx-{name}-{backend}", worker_env,
                                        log_dir, str(settings.redis_url)))  # fmt: skip
        wait_until(
            lambda: receiver.poll() is None and echo(port, calling="BENCH"),
            what="receiver",
            timeout=60,
        )
        sent = send_studies(env.directory / f"latency-{backend}", port, LATENCY_STUDIES + 1)
        sent.pop(next(iter(sent)))  # the first study warms the worker up: not counted
        return study_delays(settings.resolved_database_url, sent)
    finally:
        receiver.terminate()
        receiver.wait(timeout=60)
        stop_workers(workers)


def send_studies(directory: Path, port: int, studies: int) -> dict[str, float]:
    """Each study on its own association, one after the other: uid -> when its last instance
    was acknowledged (epoch seconds)."""
    import pydicom

    sent = {}
    for index in range(studies):
        folder = directory / f"study-{index}"
        paths = write_instances(folder, LATENCY_SLICES, seed=index)
        send_all(port, folder)
        sent[str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)] = time.time()
    return sent


def study_delays(database_url: str, sent: dict[str, float]) -> dict:
    import sqlalchemy as sa

    from bench.latency import percentiles
    from bench.pipeline import POLL_S
    from ledger.statements import studies, urgent_cases
    from schemas.tables import as_utc

    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    decided = sa.select(studies.c.study_uid, studies.c.id, studies.c.classified_at).where(
        studies.c.study_uid.in_(list(sent)), studies.c.status == "classified"
    )

    def rows() -> list:
        with engine.connect() as connection:
            return connection.execute(decided).all()

    wait_until(lambda: len(rows()) == len(sent), "study decisions", 300, interval=POLL_S)
    found = rows()
    listed = sa.select(urgent_cases.c.study_id, urgent_cases.c.escalated_at).where(
        urgent_cases.c.study_id.in_([row.id for row in found])
    )
    with engine.connect() as connection:
        escalated = dict(connection.execute(listed).all())
    engine.dispose()
    since = {row.id: sent[row.study_uid] for row in found}
    decision = [(as_utc(row.classified_at).timestamp() - since[row.id]) * 1000 for row in found]
    worklist = [(as_utc(at).timestamp() - since[sid]) * 1000 for sid, at in escalated.items()]
    return {
        "studies": len(found),
        "slices_per_study": LATENCY_SLICES,
        "idle_seconds": IDLE_SECONDS,
        "last_instance_to_decision_ms": percentiles(decision),
        "last_instance_to_worklist_ms": percentiles(worklist),
        "urgent_studies": len(worklist),
    }


def bare_handler() -> Callable:
    def handle_store(event) -> int:  # noqa: ANN001 - pynetdicom Event
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        _ = dataset.pixel_array
        return 0x0000

    return handle_store


def serve_bare(port: int) -> None:
    """A pynetdicom SCP that decodes each CT instance and keeps nothing (a reference)."""
    from pynetdicom import AE, evt

    from gateway.intake.receiver import (
        MAX_PDU_BYTES,
        VERIFICATION,
        offered_syntaxes,
        quiet_pynetdicom,
    )

    quiet_pynetdicom()
    ae = AE(ae_title="TRIAGE")
    ae.add_supported_context(CT_STORAGE, offered_syntaxes())
    ae.add_supported_context(VERIFICATION)
    ae.maximum_pdu_size = MAX_PDU_BYTES
    handlers = [(evt.EVT_C_STORE, bare_handler()), (evt.EVT_C_ECHO, lambda _event: 0x0000)]
    ae.start_server(("127.0.0.1", port), evt_handlers=handlers)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.receive")
    parser.add_argument("--bare", type=int, required=True, help="serve the bare SCP on PORT")
    serve_bare(parser.parse_args().bare)
