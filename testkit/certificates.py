"""Throwaway X.509 certificates for TLS tests: CAs and the certificates they sign, as PEM files.

Keys are RSA (the TLS 1.2 suites of DICOM's BCP 195 profiles that dcmtk offers are ECDHE-RSA
and DHE-RSA), unencrypted; every certificate is valid from an hour ago for a day.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_BITS = 2048


@dataclass(frozen=True)
class Identity:
    """A certificate and its key, as files (`ca` is the CA file that verifies it)."""

    cert: Path
    key: Path
    ca: Path


@dataclass
class Authority:
    """A self-signed CA that writes the certificates it signs into `folder`."""

    folder: Path
    name: str
    _key: rsa.RSAPrivateKey | None = None
    _cert: x509.Certificate | None = None

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        subject = _name(self.name)
        builder = _builder(subject, subject, self._key.public_key()).add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        )
        self._cert = builder.sign(self._key, hashes.SHA256())
        self.ca.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    @property
    def ca(self) -> Path:
        return self.folder / f"{self.name}-ca.pem"

    def issue(self, name: str, *, server: bool) -> Identity:
        """A leaf certificate for `name`: a server's names localhost and 127.0.0.1 (serverAuth),
        a client's is for clientAuth."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            _builder(_name(name), self._cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        identity = Identity(
            self.folder / f"{name}-cert.pem", self.folder / f"{name}-key.pem", self.ca
        )
        identity.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        identity.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        return identity


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
