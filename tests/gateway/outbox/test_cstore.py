"""C-STORE of the SR and the key image to real peers: dcmtk's storescp as the PACS (the SR read
back with dsrdump, the key image with pydicom) and pynetdicom SCPs that answer chosen failure
statuses. The SR's content: tests/gateway/outbox/test_dicom_sr.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from gateway.outbox.cstore import parse_destination, send_cstore, status_retryable
from gateway.outbox.dicom_sr import build_sr
from gateway.outbox.key_image import build_key_image, key_image_reference, render_key_image
from gateway.outbox.report import DeliveryError, StudyReport
from gateway.tls import ClientTls, destination_tls
from schemas.settings import Settings
from testkit.dcmtk import storescp, tls_options
from testkit.services import free_port
from tests.gateway.conftest import Certificates

pytestmark = pytest.mark.timeout(120)
needs_dcmtk = pytest.mark.skipif(
    shutil.which("storescp") is None or shutil.which("dsrdump") is None,
    reason="dcmtk (storescp, dsrdump) is not installed: apt-get install dcmtk",
)


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """dcmtk's storescp on a free loopback port: ('PACS@127.0.0.1:port', its folder)."""
    folder, port = tmp_path / "pacs", free_port()
    with storescp(folder, port):
        yield f"PACS@127.0.0.1:{port}", folder


def stored(folder: Path) -> dict[str, Path]:
    """Files storescp wrote, by SOPInstanceUID."""
    return {
        pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID: path
        for path in folder.iterdir()
    }


@needs_dcmtk
def test_sr_and_key_image_reach_the_pacs(pacs: tuple[str, Path], report: StudyReport) -> None:
    destination, folder = pacs
    image = build_key_image(report, "TRIAGE")
    sr = build_sr(report, "TRIAGE", key_image=key_image_reference(report))
    send_cstore([sr, image], destination, "TRIAGE", timeout=10)

    files = stored(folder)
    assert set(files) == {sr.SOPInstanceUID, image.SOPInstanceUID}
    dump = subprocess.run(
        ["dsrdump", "+Pl", str(files[sr.SOPInstanceUID])], capture_output=True, text=True
    ).stdout
    assert '"urgent"' in dump and "0.873" in dump and report.model_version in dump
    assert "not a diagnosis" in dump.lower()
    # the plain dump (long values shortened) still says it
    plain = subprocess.run(
        ["dsrdump", str(files[sr.SOPInstanceUID])], capture_output=True, text=True
    ).stdout
    assert "not a diagnosis" in plain
    back_sr = pydicom.dcmread(files[sr.SOPInstanceUID])
    assert back_sr.StudyInstanceUID == report.study_uid
    assert back_sr.PatientID == report.patient_id and back_sr.AccessionNumber == report.accession
    assert back_sr.SeriesInstanceUID not in (report.top_series_uid, image.SeriesInstanceUID)

    back = pydicom.dcmread(files[image.SOPInstanceUID])
    assert back.StudyInstanceUID == report.study_uid
    assert back.SeriesInstanceUID != report.top_series_uid
    assert back.PatientID == report.patient_id and back.AccessionNumber == report.accession
    assert back.PhotometricInterpretation == "RGB" and back.BurnedInAnnotation == "YES"
    pixels = back.pixel_array.astype(int)
    assert pixels.shape == (256, 256, 3)
    plain_pixels = render_key_image(replace(report, saliency=None)).astype(int)
    below_banner = np.s_[40:, :]
    changed = np.any(pixels[below_banner] != plain_pixels[below_banner], axis=-1)
    assert changed.mean() > 0.05  # the overlay coloured part of the slice
    assert np.abs(pixels[below_banner][..., 0] - pixels[below_banner][..., 2]).max() > 40


@needs_dcmtk
def test_a_resend_is_the_same_instance(pacs: tuple[str, Path], report: StudyReport) -> None:
    destination, folder = pacs
    first = [build_sr(report, "TRIAGE"), build_key_image(report, "TRIAGE")]
    again = [build_sr(report, "TRIAGE"), build_key_image(report, "TRIAGE")]
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in again]
    assert [d.SeriesInstanceUID for d in first] == [d.SeriesInstanceUID for d in again]
    send_cstore(first, destination, "TRIAGE", timeout=10)
    send_cstore(again, destination, "TRIAGE", timeout=10)
    assert len(stored(folder)) == 2  # the PACS holds each instance once
    # a second decision on the study is a new instance in the same series
    redecided = build_sr(replace(report, decision=2), "TRIAGE")
    assert redecided.SOPInstanceUID != first[0].SOPInstanceUID
    assert redecided.SeriesInstanceUID == first[0].SeriesInstanceUID


@pytest.fixture
def pacs_tls(certificates: Certificates) -> ClientTls:
    """Our TLS towards a PACS whose certificate the hospital's CA signed, naming 127.0.0.1."""
    tls = destination_tls(Settings(dicom_destination_tls_ca=certificates.server.ca))
    assert tls is not None
    return tls


@needs_dcmtk
def test_sr_reaches_a_pacs_over_tls(
    tmp_path: Path, report: StudyReport, certificates: Certificates, pacs_tls: ClientTls
) -> None:
    folder, port, server = tmp_path / "pacs", free_port(), certificates.server
    with storescp(folder, port, options=tls_options(server.key, server.cert)):
        sr = build_sr(report, "TRIAGE")
        send_cstore([sr], f"PACS@127.0.0.1:{port}", "TRIAGE", timeout=10, tls=pacs_tls)
    assert set(stored(folder)) == {sr.SOPInstanceUID}


@needs_dcmtk
def test_a_pacs_certificate_our_ca_did_not_sign_is_refused(
    tmp_path: Path, report: StudyReport, certificates: Certificates, pacs_tls: ClientTls
) -> None:
    folder, port, impostor = tmp_path / "pacs", free_port(), certificates.impostor
    sr, destination = build_sr(report, "TRIAGE"), f"PACS@127.0.0.1:{port}"
    with (
        storescp(folder, port, options=tls_options(impostor.key, impostor.cert)),
        pytest.raises(DeliveryError) as caught,
    ):
        send_cstore([sr], destination, "TRIAGE", timeout=10, tls=pacs_tls)
    assert caught.value.retryable and "TLS" in caught.value.reason
    assert list(folder.iterdir()) == []


@needs_dcmtk
def test_mutual_tls_and_the_host_name_check(
    tmp_path: Path, report: StudyReport, certificates: Certificates
) -> None:
    """A PACS that requires our client certificate gets it; a certificate that does not name
    the host we expect is refused unless the host name check is off."""
    folder, port = tmp_path / "pacs", free_port()
    server, client = certificates.server, certificates.client
    destination = f"PACS@127.0.0.1:{port}"
    ours = {
        "dicom_destination_tls_ca": server.ca,
        "dicom_destination_tls_cert": client.cert,
        "dicom_destination_tls_key": client.key,
    }
    anonymous = destination_tls(Settings(dicom_destination_tls_ca=server.ca))
    elsewhere = {**ours, "dicom_destination_tls_hostname": "pacs.elsewhere.example"}
    unchecked = {**elsewhere, "dicom_destination_tls_check_hostname": False}
    sr = build_sr(report, "TRIAGE")
    with storescp(folder, port, options=tls_options(server.key, server.cert, client.ca)):
        for refused in (anonymous, destination_tls(Settings(**elsewhere))):
            with pytest.raises(DeliveryError):
                send_cstore([sr], destination, "TRIAGE", timeout=10, tls=refused)
        assert list(folder.iterdir()) == []
        send_cstore([sr], destination, "TRIAGE", timeout=10, tls=destination_tls(Settings(**ours)))
        assert set(stored(folder)) == {sr.SOPInstanceUID}
        key_image = build_key_image(report, "TRIAGE")
        unchecked_tls = destination_tls(Settings(**unchecked))
        send_cstore([key_image], destination, "TRIAGE", timeout=10, tls=unchecked_tls)
        assert set(stored(folder)) == {sr.SOPInstanceUID, key_image.SOPInstanceUID}


def test_destination_down_is_retryable(report: StudyReport) -> None:
    port = free_port()  # nobody listens
    with pytest.raises(DeliveryError) as caught:
        send_cstore([build_sr(report, "TRIAGE")], f"PACS@127.0.0.1:{port}", "TRIAGE", timeout=3)
    assert caught.value.retryable
    assert report.patient_id not in caught.value.reason


def test_a_silent_peer_times_out_retryably(report: StudyReport) -> None:
    """A peer that accepts TCP and never answers the association request."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            send_cstore([build_sr(report, "T")], f"PACS@127.0.0.1:{port}", "TRIAGE", timeout=2)
        assert caught.value.retryable
        assert time.monotonic() - started < 15


class StatusPacs:
    """A pynetdicom storage SCP answering every C-STORE with `status`; keeps what it got."""

    def __init__(self, status: int, *, ae_title: str = "PACS") -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.status = status
        self.received: list[str] = []
        self.ae = AE(ae_title=ae_title)
        self.ae.require_called_aet = True
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.port = free_port()
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)]
        )

    def store(self, event) -> int:  # noqa: ANN001 - pynetdicom's event
        self.received.append(event.request.AffectedSOPInstanceUID)
        return self.status

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(0xA700, True), (0xA7FF, True), (0x0110, True), (0xA900, False), (0xC000, False)],
)
def test_failure_statuses(report: StudyReport, status: int, retryable: bool) -> None:
    peer = StatusPacs(status)
    try:
        with pytest.raises(DeliveryError) as caught:
            send_cstore(
                [build_sr(report, "TRIAGE"), build_key_image(report, "TRIAGE")],
                f"PACS@127.0.0.1:{peer.port}",
                "TRIAGE",
                timeout=5,
            )
        assert caught.value.retryable is retryable
        assert f"0x{status:04X}" in caught.value.reason
        assert len(peer.received) == 1  # stops at the first failure
    finally:
        peer.close()


def test_warnings_count_as_stored_and_a_wrong_called_ae_is_refused(report: StudyReport) -> None:
    peer = StatusPacs(0xB000)
    try:
        datasets = [build_sr(report, "TRIAGE"), build_key_image(report, "TRIAGE")]
        send_cstore(datasets, f"PACS@127.0.0.1:{peer.port}", "TRIAGE", timeout=5)
        assert peer.received == [d.SOPInstanceUID for d in datasets]
        with pytest.raises(DeliveryError) as caught:
            send_cstore(datasets, f"OTHER@127.0.0.1:{peer.port}", "TRIAGE", timeout=5)
        assert caught.value.retryable and "rejected" in caught.value.reason
    finally:
        peer.close()


def test_parse_destination() -> None:
    assert parse_destination("PACS@10.0.0.5:11112") == ("PACS", "10.0.0.5", 11112)
    assert parse_destination("PACS@[::1]:104") == ("PACS", "::1", 104)
    for bad in ("PACS", "10.0.0.5:104", "@host:1", "PACS@host", "PACS@host:0"):
        with pytest.raises(ValueError):
            parse_destination(bad)
    assert status_retryable(0xA701) and not status_retryable(0xC211)


def test_threads_left_behind() -> None:
    """pynetdicom's requesting association threads (ours, sending) end with the call; an
    accepting one may still be closing in a receiver an earlier test of this process ran."""
    names = [
        t.name
        for t in threading.enumerate()
        if "Association" in type(t).__name__ and t.name.startswith("RequestorThread")
    ]
    assert names == []
