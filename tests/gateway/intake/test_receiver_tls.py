"""The receiver over DICOM TLS: dcmtk's storescu (`+tls`) against a real receiver on loopback,
with certificates made for the tests (tests/gateway/conftest.py): a CA, the receiver's
certificate, a client certificate it signed, and one signed by another CA. The ledger is SQLite.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.intake.receiver import Receiver, start_receiver
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
