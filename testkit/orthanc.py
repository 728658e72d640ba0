"""Orthanc as the hospital's archive: a plain `Orthanc conf.json` process on free loopback ports.

Debian's `orthanc` (and `orthanc-dicomweb`, loaded as a plugin when installed) started from a
JSON configuration of its own, no daemon, no system paths: storage in the given directory,
HTTP (with DICOMweb at /dicom-web, basic auth for the `users` given) and DICOM on loopback, C-STORE accepted only from the modalities it names (AE title and
host checked). The REST helpers are the few calls the tests make.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from testkit.services import free_port, wait_until

ORTHANC_BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def orthanc_installed() -> bool:
    return shutil.which(ORTHANC_BINARY) is not None


@dataclass(frozen=True)
class Modality:
    """A peer Orthanc knows: its AE title, host and DICOM port."""

    ae_title: str
    host: str
    port: int


@dataclass
class OrthancServer:
    """An Orthanc process; `modalities` (name -> Modality) are the only peers that may store."""

    directory: Path
    modalities: dict[str, Modality]
    ae_title: str = "ORTHANC"
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    users: dict[str, str] = field(default_factory=dict)  # HTTP basic auth when given

    @property
    def auth(self) -> tuple[str, str] | None:
        return next(iter(self.users.items())) if self.users else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def configuration(self) -> dict[str, Any]:
        return {
            "Name": "triage-test-archive",
            "StorageDirectory": str(self.directory / "storage"),
            "IndexDirectory": str(self.directory / "storage"),
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False,  # only the modalities below may store
            "DicomCheckModalityHost": True,  # ... and only from their host
            "DicomAlwaysAllowEcho": True,
            "DicomModalities": {
                name: [peer.ae_title, peer.host, peer.port]
                for name, peer in self.modalities.items()
            },
            "DefaultEncoding": "Utf8",
            "StableAge": 1,
            "ConcurrentJobs": 2,
            "DicomScuTimeout": 30,
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
        }

    def start(self) -> OrthancServer:
        """Write the configuration, start Orthanc, wait until its REST API answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "orthanc.json"
        config.write_text(json.dumps(self.configuration(), indent=2))
        log = (self.directory / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            [ORTHANC_BINARY, str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_until(self._answers, what=f"Orthanc on HTTP port {self.http_port}", timeout=30)
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {self.process.returncode}")
        return self.get("/system")["DicomAet"] == self.ae_title

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    # -- REST -----------------------------------------------------------------------------

    def get(self, path: str) -> Any:  # noqa: ANN401 - JSON
        response = httpx.get(self.url + path, timeout=30, auth=self.auth)
        response.raise_for_status()
        return response.json()

    def upload(self, dicom: bytes) -> str:
        """POST /instances: store one instance; its Orthanc id."""
        response = httpx.post(self.url + "/instances", content=dicom, timeout=30, auth=self.auth)
        response.raise_for_status()
        return response.json()["ID"]

    def store_to(self, modality: str, resource: str) -> httpx.Response:
        """POST /modalities/{modality}/store, synchronously: the whole response (a refused
        job is HTTP 500 with Orthanc's reason)."""
        body = {"Resources": [resource], "Synchronous": True}
        return httpx.post(
            f"{self.url}/modalities/{modality}/store", json=body, timeout=120, auth=self.auth
        )

    def study_instances(self, study: str) -> list[dict[str, Any]]:
        """Every instance of a study (Orthanc id), with its simplified tags."""
        return [
            {"ID": item["ID"], **self.get(f"/instances/{item['ID']}/simplified-tags")}
            for item in self.get(f"/studies/{study}/instances")
        ]

    def file(self, instance: str) -> bytes:
        response = httpx.get(f"{self.url}/instances/{instance}/file", timeout=30, auth=self.auth)
        response.raise_for_status()
        return response.content
