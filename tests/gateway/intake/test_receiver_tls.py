"""The receiver over DICOM TLS: dcmtk's storescu (`+tls`) against a real receiver on loopback,
with certificates made for the tests (tests/gateway/conftest.py): a CA, the receiver's
certificate, a client certificate it signed, and one signed by another CA. The ledger is SQLite.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.intake.receiver import VERIFICATION, Receiver, start_receiver
from gateway.intake.study_closer import StudyCloser
from gateway.tls import TlsSettingsError
from ledger.database import engine_for
from ledger.statements import scans, studies
from schemas.settings import Settings
from testkit.dcmtk import echo, storescu, tls_options
from tests.gateway.conftest import Certificates
from tests.gateway.intake.test_receiver import ct_instance

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed"),
]
REPO_ROOT = Path(__file__).resolve().parents[3]


def tls_settings(settings: Settings, certificates: Certificates, *, mutual: bool) -> Settings:
    server = certificates.server
    return settings.model_copy(
        update={
            "dicom_tls_cert": server.cert,
            "dicom_tls_key": server.key,
            "dicom_tls_ca": certificates.client.ca if mutual else None,
        }
    )


@pytest.fixture
def mutual_receiver(settings: Settings, certificates: Certificates) -> Iterator[Receiver]:
    """The receiver under mutual TLS: a sender must present a certificate its CA signed."""
    mutual = tls_settings(settings, certificates, mutual=True)
    running = start_receiver(
        mutual, host="127.0.0.1", port=0, closer=StudyCloser(mutual, interval=3600)
    )
    yield running
    running.stop(grace=5)


def write_study(folder: Path, study_uid: str, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"slice-{number}.dcm" for number in range(1, count + 1)]
    for number, path in enumerate(paths, start=1):
        ct_instance(study_uid, number, 120, size=64).save_as(path, enforce_file_format=True)
    return paths


def rows(settings: Settings, table: sa.Table) -> list[sa.Row]:
    with engine_for(settings.resolved_database_url).begin() as connection:
        return connection.execute(sa.select(table)).all()


def test_storescu_over_mutual_tls_completes_a_study(
    mutual_receiver: Receiver, settings: Settings, certificates: Certificates, tmp_path: Path
) -> None:
    client = certificates.client
    study = write_study(tmp_path / "study", "1.2.826.0.1.88.1", 3)
    options = tls_options(client.key, client.cert, certificates.server.ca)
    assert storescu(mutual_receiver.port, study, *options) == 0
    (row,) = rows(settings, studies)
    assert row.study_uid == "1.2.826.0.1.88.1"
    assert len(rows(settings, scans)) == 3


def test_a_client_certificate_from_another_ca_is_refused(
    mutual_receiver: Receiver, settings: Settings, certificates: Certificates, tmp_path: Path
) -> None:
    stranger = certificates.stranger
    study = write_study(tmp_path / "study", "1.2.826.0.1.88.2", 2)
    options = tls_options(stranger.key, stranger.cert, certificates.server.ca)
    assert storescu(mutual_receiver.port, study, *options) != 0
    anonymous = ["+tla", "+cf", str(certificates.server.ca)]  # no client certificate at all
    assert storescu(mutual_receiver.port, study, *anonymous) != 0
    assert rows(settings, scans) == [] and rows(settings, studies) == []
    assert mutual_receiver.guard.held() == 0  # the refused connections hold nothing


def test_plain_dicom_to_the_tls_port_fails(
    mutual_receiver: Receiver, settings: Settings, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "study", "1.2.826.0.1.88.3", 1)
    assert storescu(mutual_receiver.port, study) != 0
    assert not echo(mutual_receiver.port)
    assert rows(settings, scans) == []


def test_a_silent_connection_does_not_hold_up_the_handshakes_of_others(
    settings: Settings, certificates: Certificates, tmp_path: Path
) -> None:
    """A peer that connects and never starts its handshake is cut at the association deadline;
    meanwhile another sender's handshake and study go through."""
    bounded = tls_settings(settings, certificates, mutual=True).model_copy(
        update={"dicom_association_seconds": 2.0}
    )
    running = start_receiver(
        bounded, host="127.0.0.1", port=0, closer=StudyCloser(bounded, interval=3600)
    )
    client = certificates.client
    try:
        with socket.create_connection(("127.0.0.1", running.port)) as silent:
            study = write_study(tmp_path / "study", "1.2.826.0.1.88.4", 1)
            options = tls_options(client.key, client.cert, certificates.server.ca)
            assert storescu(running.port, study, *options) == 0
            silent.settimeout(10)
            assert silent.recv(1) == b""  # closed by the receiver, not by us
    finally:
        running.stop(grace=5)
    assert len(rows(settings, scans)) == 1


def echo_request_pdus() -> tuple[bytes, bytes]:
    """(an A-ASSOCIATE-RQ for verification, a C-ECHO-RQ's P-DATA followed by an
    A-RELEASE-RQ), encoded by pynetdicom."""
    from pynetdicom.dimse_messages import C_ECHO_RQ
    from pynetdicom.dimse_primitives import C_ECHO
    from pynetdicom.pdu import A_ASSOCIATE_RQ, A_RELEASE_RQ, P_DATA_TF
    from pynetdicom.pdu_primitives import (
        A_ASSOCIATE,
        A_RELEASE,
        ImplementationClassUIDNotification,
        MaximumLengthNotification,
    )
    from pynetdicom.presentation import build_context

    request = A_ASSOCIATE()
    request.application_context_name = "1.2.840.10008.3.1.1.1"
    request.calling_ae_title, request.called_ae_title = "SENDER", "TRIAGE"
    context = build_context(VERIFICATION, ["1.2.840.10008.1.2"])
    context.context_id = 1
    request.presentation_context_definition_list = [context]
    maximum, implementation = MaximumLengthNotification(), ImplementationClassUIDNotification()
    maximum.maximum_length_received = 16382
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.9.1"
    request.user_information = [maximum, implementation]
    echo, message = C_ECHO(), C_ECHO_RQ()
    echo.MessageID, echo.AffectedSOPClassUID = 1, VERIFICATION
    message.primitive_to_message(echo)
    pdus = [A_ASSOCIATE_RQ(), P_DATA_TF(), A_RELEASE_RQ()]
    for pdu, primitive in zip(
        pdus, [request, next(message.encode_msg(1, 16382)), A_RELEASE()], strict=True
    ):
        pdu.from_primitive(primitive)
    return pdus[0].encode(), pdus[1].encode() + pdus[2].encode()


def read_pdu_type(sock: socket.socket) -> int:
    """Read one whole PDU; its type (TimeoutError when none comes within the socket's timeout)."""
    kind, length = struct.unpack(">BxL", read_exactly(sock, 6))
    read_exactly(sock, length)
    return kind


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the receiver")
        data += chunk
    return data


def test_pdus_that_share_a_tls_record_are_all_read(
    mutual_receiver: Receiver, certificates: Certificates
) -> None:
    """A sender that writes a C-ECHO-RQ and its A-RELEASE-RQ at once (one TLS record): the
    release, decrypted along with the echo and invisible to `select`, is answered at once,
    not when the peer's silence times out."""
    request, echo_and_release = echo_request_pdus()
    client = ssl.create_default_context(cafile=str(certificates.server.ca))
    client.load_cert_chain(certificates.client.cert, certificates.client.key)
    with (
        socket.create_connection(("127.0.0.1", mutual_receiver.port), timeout=10) as raw,
        client.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(request)
        assert read_pdu_type(sock) == 0x02  # A-ASSOCIATE-AC
        sock.sendall(echo_and_release)
        answers = [read_pdu_type(sock), read_pdu_type(sock)]
    assert answers == [0x04, 0x06]  # the C-ECHO-RSP, the A-RELEASE-RP


def test_tls_without_client_certificates_accepts_an_anonymous_sender(
    settings: Settings, certificates: Certificates, tmp_path: Path
) -> None:
    server_only = tls_settings(settings, certificates, mutual=False)
    running = start_receiver(
        server_only, host="127.0.0.1", port=0, closer=StudyCloser(server_only, interval=3600)
    )
    try:
        study = write_study(tmp_path / "study", "1.2.826.0.1.88.5", 2)
        anonymous = ["+tla", "+cf", str(certificates.server.ca)]
        assert storescu(running.port, study, *anonymous) == 0
    finally:
        running.stop(grace=5)
    assert len(rows(settings, scans)) == 2


def test_the_health_check_echoes_over_tls(settings: Settings, certificates: Certificates) -> None:
    """`triage echo` (the compose health check) with the receiver's TLS settings: success over
    TLS; the same receiver is not answered without them."""
    server_only = tls_settings(settings, certificates, mutual=False)
    running = start_receiver(
        server_only, host="127.0.0.1", port=0, closer=StudyCloser(server_only, interval=3600)
    )
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "PYTHONPATH": str(REPO_ROOT),
        "TRIAGE_DATA_DIR": str(settings.resolved_data_dir),
    }
    tls = {
        "TRIAGE_DICOM_TLS_CERT": str(certificates.server.cert),
        "TRIAGE_DICOM_TLS_KEY": str(certificates.server.key),
    }
    command = [sys.executable, "-m", "triage", "echo", "--port", str(running.port)]
    try:
        over_tls = subprocess.run(
            command, env={**environment, **tls}, cwd=REPO_ROOT, capture_output=True, timeout=60
        )
        plain = subprocess.run(
            command, env=environment, cwd=REPO_ROOT, capture_output=True, timeout=60
        )
    finally:
        running.stop(grace=5)
    assert (over_tls.returncode, plain.returncode) == (0, 1)


def test_unusable_tls_files_stop_the_receiver_before_it_listens(
    settings: Settings, certificates: Certificates, tmp_path: Path
) -> None:
    server, other_key = certificates.server, certificates.client.key
    cases = [
        ({"dicom_tls_cert": tmp_path / "absent.pem"}, "TRIAGE_DICOM_TLS_CERT: no such file"),
        ({"dicom_tls_cert": server.key}, "TRIAGE_DICOM_TLS_CERT: .* holds no PEM certificate"),
        ({"dicom_tls_key": other_key}, "TRIAGE_DICOM_TLS_KEY: .* is not the private key of"),
        ({"dicom_tls_key": server.cert}, "TRIAGE_DICOM_TLS_KEY: .* not an unencrypted PEM"),
        ({"dicom_tls_ca": tmp_path}, "TRIAGE_DICOM_TLS_CA: .* is a directory"),
        ({"dicom_tls_ca": server.key}, "TRIAGE_DICOM_TLS_CA: .* holds no PEM CA certificate"),
    ]
    for change, message in cases:
        broken = tls_settings(settings, certificates, mutual=True).model_copy(update=change)
        with pytest.raises(TlsSettingsError, match=message):
            start_receiver(broken, host="127.0.0.1", port=0)


def test_triage_receive_names_the_setting_that_cannot_serve(
    settings: Settings, certificates: Certificates
) -> None:
    """`triage receive` with a key that is not its certificate's: exit 2 and one line saying so."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "PYTHONPATH": str(REPO_ROOT),
        "TRIAGE_DATABASE_URL": settings.resolved_database_url,
        "TRIAGE_DATA_DIR": str(settings.resolved_data_dir),
        "TRIAGE_DICOM_TLS_CERT": str(certificates.server.cert),
        "TRIAGE_DICOM_TLS_KEY": str(certificates.client.key),
    }
    finished = subprocess.run(
        [sys.executable, "-m", "triage", "receive", "--host", "127.0.0.1", "--port", "0"],
        env=environment, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode == 2
    assert "TRIAGE_DICOM_TLS_KEY" in finished.stderr and "private key" in finished.stderr
    assert "Traceback" not in finished.stderr
