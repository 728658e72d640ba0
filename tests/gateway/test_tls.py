"""The DICOM TLS contexts (gateway/tls.py) over real loopback handshakes: the BCP 195 floor and
suites, client certificates under mutual TLS, and settings that cannot serve named in the error.
The receiver and the sender over TLS with dcmtk: tests/gateway/intake/test_receiver_tls.py and
tests/gateway/outbox/test_cstore.py."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.tls import TlsSettingsError, destination_tls, receiver_context
from schemas.settings import Settings
from tests.gateway.conftest import Certificates

pytestmark = pytest.mark.timeout(60)


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """One handshake on loopback: the protocol version the client got; ssl.SSLError or
    OSError when either side refused."""
    listener = socket.create_server(("127.0.0.1", 0))
    failures: list[BaseException] = []

    def serve() -> None:
        connection, _ = listener.accept()
        connection.settimeout(10)
        try:
            with server.wrap_socket(connection, server_side=True) as wrapped:
                wrapped.recv(1)
        except OSError as error:
            failures.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
        ):
            version = wrapped.version()
            wrapped.sendall(b"x")
    finally:
        thread.join(timeout=10)
        listener.close()
    if failures:  # a client certificate refused only after the client's handshake returned
        raise failures[0]
    return str(version)


def client_context(certificates: Certificates, *, ciphers: str | None = None) -> ssl.SSLContext:
    client = ssl.create_default_context(cafile=str(certificates.server.ca))
    client.load_cert_chain(certificates.client.cert, certificates.client.key)
    if ciphers is not None:
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        client.set_ciphers(ciphers)
    return client


def receiver_settings(certificates: Certificates, **changes: object) -> Settings:
    server = certificates.server
    fields = {"dicom_tls_cert": server.cert, "dicom_tls_key": server.key, **changes}
    return Settings(**fields)


def test_tls_12_with_a_bcp195_suite_is_accepted_and_others_are_refused(
    certificates: Certificates,
) -> None:
    server = receiver_context(receiver_settings(certificates))
    assert handshake(server, client_context(certificates)) == "TLSv1.3"
    bcp195 = client_context(certificates, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    assert handshake(server, bcp195) == "TLSv1.2"
    for weak in ("AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"):  # RSA key transport; CBC
        with pytest.raises(ssl.SSLError):
            handshake(server, client_context(certificates, ciphers=weak))


def test_mutual_tls_needs_a_client_certificate_of_the_ca(certificates: Certificates) -> None:
    mutual = receiver_context(receiver_settings(certificates, dicom_tls_ca=certificates.client.ca))
    assert handshake(mutual, client_context(certificates)) == "TLSv1.3"
    stranger = ssl.create_default_context(cafile=str(certificates.server.ca))
    stranger.load_cert_chain(certificates.stranger.cert, certificates.stranger.key)
    anonymous = ssl.create_default_context(cafile=str(certificates.server.ca))
    for refused in (stranger, anonymous):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(mutual, refused)


def test_the_sender_verifies_the_pacs(certificates: Certificates) -> None:
    pacs = receiver_context(receiver_settings(certificates))
    ours = destination_tls(Settings(dicom_destination_tls_ca=certificates.server.ca))
    assert ours is not None and handshake(pacs, ours.context) == "TLSv1.3"
    wrong_ca = destination_tls(Settings(dicom_destination_tls_ca=certificates.impostor.ca))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(pacs, wrong_ca.context)
    assert destination_tls(Settings()) is None and receiver_context(Settings()) is None


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"dicom_tls_key": "k.pem"}, "TRIAGE_DICOM_TLS_KEY is set: it needs TRIAGE_DICOM_TLS_CERT"),
        (
            {"dicom_tls_cert": "c.pem"},
            "TRIAGE_DICOM_TLS_CERT is set: it needs TRIAGE_DICOM_TLS_KEY",
        ),
        ({"dicom_tls_ca": "ca.pem"}, "TRIAGE_DICOM_TLS_CA is set: it needs TRIAGE_DICOM_TLS_CERT"),
        (
            {"dicom_destination_tls_cert": "c.pem", "dicom_destination_tls_key": "k.pem"},
            "TRIAGE_DICOM_DESTINATION_TLS_CERT is set: it needs TRIAGE_DICOM_DESTINATION_TLS_CA",
        ),
    ],
)
def test_tls_settings_come_in_pairs(fields: dict[str, str], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**fields)


def test_an_empty_tls_setting_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_DICOM_TLS_CA", "")
    monkeypatch.setenv("TRIAGE_DICOM_DESTINATION_TLS_CA", "")
    settings = Settings()
    assert settings.dicom_tls_ca is None and destination_tls(settings) is None


def test_a_destination_file_that_cannot_serve_is_named(
    certificates: Certificates, tmp_path: Path
) -> None:
    client = certificates.client
    cases = [
        ({"dicom_destination_tls_ca": tmp_path / "none.pem"}, "TRIAGE_DICOM_DESTINATION_TLS_CA: no such"),
        (
            {"dicom_destination_tls_cert": client.cert, "dicom_destination_tls_key": certificates.server.key},
            "TRIAGE_DICOM_DESTINATION_TLS_KEY: .* is not the private key of",
        ),
    ]  # fmt: skip
    for fields, message in cases:
        settings = Settings(**{"dicom_destination_tls_ca": certificates.server.ca, **fields})
        with pytest.raises(TlsSettingsError, match=message):
            destination_tls(settings)
