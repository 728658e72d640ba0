"""DICOM TLS: the `ssl.SSLContext`s of the receiver and of the C-STORE sender, from the settings.

Both follow DICOM's Non-Downgrading BCP 195 TLS profile (PS3.15 B.10, what dcmtk's `+py`
offers): TLS 1.2 or later, for TLS 1.2 only the forward-secret AES-GCM suites below (TLS 1.3's
suites are all AEAD), no compression, no renegotiation. The receiver presents
TRIAGE_DICOM_TLS_CERT / _KEY; with TRIAGE_DICOM_TLS_CA a sender must present a certificate
signed by one of those CAs (mutual TLS). The sender verifies the PACS against
TRIAGE_DICOM_DESTINATION_TLS_CA (and, by default, its host name or IP address) and presents
TRIAGE_DICOM_DESTINATION_TLS_CERT / _KEY when set.

Every file is read when the context is built; a missing or unreadable file, a key that does not
match its certificate, or a CA file without a certificate raise `TlsSettingsError` naming the
setting and the reason.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from schemas.settings import Settings

BCP195_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-AES128-GCM-SHA256",
    )
)


class TlsSettingsError(ValueError):
    """A TLS setting names a file that cannot serve (the message names the setting)."""


@dataclass(frozen=True)
class ClientTls:
    """What the sender wraps its connection with: the context and the name the peer's
    certificate must carry (None: the destination's host)."""

    context: ssl.SSLContext
    server_hostname: str | None = None


def bcp195_context(purpose: ssl.Purpose) -> ssl.SSLContext:
    """A context with the profile's protocol floor, suites and options, verifying nothing yet."""
    side = (
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    context = ssl.SSLContext(side)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if purpose is ssl.Purpose.CLIENT_AUTH:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE  # BCP 195: the strongest suite
    return context


def receiver_context(settings: Settings) -> ssl.SSLContext | None:
    """The receiver's context, or None when TRIAGE_DICOM_TLS_CERT is unset (plain DICOM)."""
    if settings.dicom_tls_cert is None:
        return None
    context = bcp195_context(ssl.Purpose.CLIENT_AUTH)
    load_identity(
        context,
        ("TRIAGE_DICOM_TLS_CERT", settings.dicom_tls_cert),
        ("TRIAGE_DICOM_TLS_KEY", settings.dicom_tls_key),
    )
    if settings.dicom_tls_ca is not None:
        load_trusted(context, "TRIAGE_DICOM_TLS_CA", settings.dicom_tls_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def destination_tls(settings: Settings) -> ClientTls | None:
    """The sender's TLS towards TRIAGE_DICOM_DESTINATION, or None when
    TRIAGE_DICOM_DESTINATION_TLS_CA is unset (plain DICOM)."""
    if settings.dicom_destination_tls_ca is None:
        return None
    context = bcp195_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = settings.dicom_destination_tls_check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    load_trusted(context, "TRIAGE_DICOM_DESTINATION_TLS_CA", settings.dicom_destination_tls_ca)
    if settings.dicom_destination_tls_cert is not None:
        load_identity(
            context,
            ("TRIAGE_DICOM_DESTINATION_TLS_CERT", settings.dicom_destination_tls_cert),
            ("TRIAGE_DICOM_DESTINATION_TLS_KEY", settings.dicom_destination_tls_key),
        )
    return ClientTls(context, settings.dicom_destination_tls_hostname)


def health_check_tls(settings: Settings) -> ClientTls | None:
    """TLS for `triage echo` against our own TLS receiver: it presents the receiver's own
    certificate (accepted under mutual TLS where TRIAGE_DICOM_TLS_CA signed it) and, checking
    that the receiver answers rather than who it is, does not verify the receiver's."""
    if settings.dicom_tls_cert is None:
        return None
    context = bcp195_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    load_identity(
        context,
        ("TRIAGE_DICOM_TLS_CERT", settings.dicom_tls_cert),
        ("TRIAGE_DICOM_TLS_KEY", settings.dicom_tls_key),
    )
    return ClientTls(context)


def load_identity(
    context: ssl.SSLContext, cert: tuple[str, Path], key: tuple[str, Path | None]
) -> None:
    """Load a certificate (chain) and its unencrypted private key, each named by its setting."""
    (cert_name, cert_path), (key_name, key_path) = cert, key
    if key_path is None:
        raise TlsSettingsError(f"{cert_name} is set: set {key_name} to its private key too")
    readable(cert_name, cert_path)
    readable(key_name, key_path)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(cert_path))
    except ssl.SSLError:
        raise TlsSettingsError(f"{cert_name}: {cert_path} holds no PEM certificate") from None
    try:
        context.load_cert_chain(cert_path, key_path, password=lambda: b"")
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            reason = f"{key_path} is not the private key of {cert_name}'s certificate"
        else:
            reason = f"{key_path} is not an unencrypted PEM private key ({error.reason})"
        raise TlsSettingsError(f"{key_name}: {reason}") from None


def load_trusted(context: ssl.SSLContext, name: str, path: Path) -> None:
    """Trust the PEM CA certificates in `path` (the setting `name`)."""
    readable(name, path)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError:
        raise TlsSettingsError(f"{name}: {path} holds no PEM CA certificate") from None


def readable(name: str, path: Path) -> None:
    """Raise TlsSettingsError unless `path` is a file this process can read."""
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise TlsSettingsError(f"{name}: no such file {path}") from None
    except IsADirectoryError:
        raise TlsSettingsError(f"{name}: {path} is a directory, not a PEM file") from None
    except OSError as error:
        raise TlsSettingsError(f"{name}: cannot read {path} ({error.strerror})") from None
