"""The webhook channel (`TRIAGE_NOTIFY_URL`): sent from the outbox by the deliveries worker
(gateway/outbox/sending.py), so a slow or blackholed endpoint never delays an escalation.

A webhook POST carries {"scan_id", "study_id"} (our ids) under a wall-clock deadline.
Redirects are not followed (a 3xx is a failure) and only http(s) URLs are used. Any failure is
False (the outbox tries again later); none raises.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait

from gateway.outbox.deadline import Deadline, http_handlers

log = logging.getLogger(__name__)
NOTIFY_DEADLINE_S = 5.0  # per POST, wall clock, whatever the endpoint does


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is not followed: urllib then raises it as an HTTPError (a failed send)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _opener(deadline: Deadline) -> urllib.request.OpenerDirector:
    """http and https only (no file:, ftp: or data:), redirects refused, its connections cut
    at the deadline."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        *http_handlers(deadline),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        _RefuseRedirects(),
    ):
        opener.add_handler(handler)
    return opener


def _post(url: str, scan_id: str, timeout_s: float, study_id: str | None = None) -> bool:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("not an http(s) URL")
    body = {"scan_id": scan_id} if study_id is None else {"scan_id": scan_id, "study_id": study_id}
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with Deadline(timeout_s) as deadline:
        with _opener(deadline).open(request, timeout=timeout_s) as response:
            answered = 200 <= response.status < 300
        return answered and not deadline.passed


def _send(url: str, scan_id: str, timeout_s: float, study_id: str | None = None) -> bool:
    """One POST; every failure (HTTP status, bad status line, timeout, refused) is False."""
    try:
        return _post(url, scan_id, timeout_s, study_id)
    except Exception as error:  # http.client.HTTPException, OSError, ValueError, ...
        log.error("urgent scan %s: webhook failed (%s)", scan_id, type(error).__name__)
        return False


def notify(
    url: str, scan_id: str, deadline_s: float = NOTIFY_DEADLINE_S, study_id: str | None = None
) -> bool:
    """POST our ids to the webhook, answered 2xx within the wall-clock deadline, else False
    (the request's socket is shut down at the deadline, so its thread ends then too)."""
    pool = ThreadPoolExecutor(1, "triage-webhook")
    future = pool.submit(_send, url, scan_id, deadline_s, study_id)
    done, _ = wait([future], timeout=deadline_s)
    pool.shutdown(wait=False, cancel_futures=True)
    if not done:
        log.error("webhook for scan %s not answered within %g s", scan_id, deadline_s)
        return False
    return future.result()
