"""Sending one outbox row: the webhook channel, routed for urgent studies only, posts our ids;
an endpoint that fails or never answers is a retryable DeliveryError. The DICOM channel over
TLS, configured by the settings, to dcmtk's storescp."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.outbox import sending as outbox
from gateway.outbox.report import DeliveryError, StudyReport
from gateway.outbox.routing import routing
from schemas.settings import Settings, get_settings
from testkit.dcmtk import storescp, tls_options
from testkit.services import free_port
from tests.gateway.conftest import Certificates
from tests.gateway.outbox.webhook_peers import Handler


def test_the_outbox_posts_our_ids_and_a_stuck_endpoint_is_a_retry(
    monkeypatch: pytest.MonkeyPatch, http_url: str, blackhole_url: str
) -> None:
    facts = {"id": "study-1", "top_scan_id": "scan-1"}
    monkeypatch.setenv("TRIAGE_NOTIFY_URL", f"{http_url}/ok")
    get_settings.cache_clear()
    assert routing(get_settings()).channels(urgent=True) == ("webhook",)
    assert routing(get_settings()).channels(urgent=False) == ()
    outbox._send_webhook(facts, get_settings())  # delivered: no error
    assert Handler.hits == ["/ok"]
    assert Handler.bodies == [{"scan_id": "scan-1", "study_id": "study-1"}]
    for url in (blackhole_url, f"{http_url}/redirect", f"{http_url}/error"):
        monkeypatch.setenv("TRIAGE_NOTIFY_URL", url)
        get_settings.cache_clear()
        with pytest.raises(DeliveryError) as error:
            outbox._send_webhook(facts, get_settings())
        assert error.value.retryable


@pytest.mark.skipif(shutil.which("storescp") is None, reason="dcmtk is not installed")
def test_the_sr_goes_to_the_pacs_over_tls_from_the_settings(
    tmp_path: Path, report: StudyReport, certificates: Certificates
) -> None:
    """The DICOM channel reads the PACS's TLS from the settings at each delivery; a CA file
    that is not there is a retryable failure naming its setting."""
    folder, port, server = tmp_path / "pacs", free_port(), certificates.server
    settings = Settings(
        dicom_destination=f"PACS@127.0.0.1:{port}", dicom_destination_tls_ca=server.ca
    )
    with storescp(folder, port, options=tls_options(server.key, server.cert)):
        outbox._send_sr(report, settings)
        assert len(list(folder.iterdir())) == 1
        missing = settings.model_copy(update={"dicom_destination_tls_ca": tmp_path / "gone.pem"})
        with pytest.raises(DeliveryError) as error:
            outbox._send_sr(report, missing)
    assert error.value.retryable
    assert error.value.reason.startswith("TRIAGE_DICOM_DESTINATION_TLS_CA: no such file")
