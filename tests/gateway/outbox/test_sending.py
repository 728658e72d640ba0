"""Sending one outbox row: the webhook channel, routed for urgent studies only, posts our ids;
an endpoint that fails or never answers is a retryable DeliveryError."""

from __future__ import annotations

import pytest

from gateway.outbox import sending as outbox
from gateway.outbox.report import DeliveryError
from gateway.outbox.routing import routing
from schemas.settings import get_settings
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
