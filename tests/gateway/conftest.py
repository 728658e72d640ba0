"""Certificates for the DICOM TLS tests of the receiver and the sender (made once a session)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from testkit.certificates import Authority, Identity


@dataclass(frozen=True)
class Certificates:
    """The hospital's CA signed `server` (localhost, 127.0.0.1) and `client`; another CA
    signed `stranger` (a client) and `impostor` (a server with the same names)."""

    server: Identity
    client: Identity
    stranger: Identity
    impostor: Identity


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("certificates")
    hospital, other = Authority(folder, "hospital"), Authority(folder, "other")
    return Certificates(
        server=hospital.issue("triage", server=True),
        client=hospital.issue("ct01", server=False),
        stranger=other.issue("intruder", server=False),
        impostor=other.issue("impostor", server=True),
    )
