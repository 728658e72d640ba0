"""Paging clinicians: a log line (scan id only) and the optional webhook (`TRIAGE_NOTIFY_URL`)
for each new worklist case; the ledger records the pages that went out.

The webhook gets one POST per case, all sent at once, under one wall-clock deadline: a slow or
blackholed endpoint delays a batch of escalations by at most `NOTIFY_DEADLINE_S`, once.
Redirects are not followed (a 3xx is a failure) and only http(s) URLs are used. Any failure is
a page not sent, retried by the reconciler; none raises.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from ledger import worklist
from ledger.database import engine_for
from schemas.settings import Settings

log = logging.getLogger(__name__)
NOTIFY_DEADLINE_S = 5.0  # per page_clinicians call, wall clock, whatever the endpoint does
MAX_CONCURRENT_PAGES = 32


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is not followed: urllib then raises it as an HTTPError (a failed page)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _opener() -> urllib.request.OpenerDirector:
    """http and https only (no file:, ftp: or data:), redirects refused."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        _RefuseRedirects(),
    ):
        opener.add_handler(handler)
    return opener


def _post(url: str, scan_id: str, timeout_s: float) -> bool:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("not an http(s) URL")
    request = urllib.request.Request(
        url,
        data=json.dumps({"scan_id": scan_id}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with _opener().open(request, timeout=timeout_s) as response:
        return 200 <= response.status < 300


def _send(url: str, scan_id: str, timeout_s: float) -> bool:
    """One POST; every failure (HTTP status, bad status line, timeout, refused) is False."""
    try:
        return _post(url, scan_id, timeout_s)
    except Exception as error:  # http.client.HTTPException, OSError, ValueError, ...
        log.error("urgent scan %s: webhook failed (%s)", scan_id, type(error).__name__)
        return False


def notify_all(
    url: str, scan_ids: Sequence[str], deadline_s: float = NOTIFY_DEADLINE_S
) -> dict[str, bool]:
    """POST {"scan_id": ...} for each scan at once; those not answered 2xx by the deadline
    are False (the request threads end on their socket timeout, never after it)."""
    if not scan_ids:
        return {}
    pool = ThreadPoolExecutor(min(len(scan_ids), MAX_CONCURRENT_PAGES), "triage-webhook")
    futures: dict[str, Future[bool]] = {
        scan_id: pool.submit(_send, url, scan_id, deadline_s) for scan_id in scan_ids
    }
    wait(futures.values(), timeout=deadline_s)
    pool.shutdown(wait=False, cancel_futures=True)
    answered = {sid: f for sid, f in futures.items() if f.done() and not f.cancelled()}
    if len(answered) < len(futures):
        log.error(
            "webhook: %d pages not answered within %g s", len(futures) - len(answered), deadline_s
        )
    return {sid: sid in answered and answered[sid].result() for sid in futures}


def notify(url: str, scan_id: str, deadline_s: float = NOTIFY_DEADLINE_S) -> bool:
    """POST {"scan_id": ...} to the webhook within the deadline; a failure is False."""
    return notify_all(url, [scan_id], deadline_s)[scan_id]


def page_clinicians(
    settings: Settings, scan_ids: Sequence[str], deadline_s: float = NOTIFY_DEADLINE_S
) -> list[str]:
    """Page each new worklist case (log line, webhook if set); record the pages that went out.

    A case whose page failed (webhook down, worker killed) keeps no `notified_at`, and the
    reconciler pages it again. Never raises: the worklist row is already committed.
    """
    for scan_id in scan_ids:
        log.warning("URGENT scan %s is on the worklist", scan_id)
    if settings.notify_url:
        sent = notify_all(settings.notify_url, scan_ids, deadline_s)
        paged = [scan_id for scan_id in scan_ids if sent[scan_id]]
    else:
        paged = list(scan_ids)
    if paged:
        try:
            worklist.mark_notified(engine_for(settings.resolved_database_url), paged)
        except Exception as error:  # paged again later: twice beats never
            log.error("could not record %d pages: %s", len(paged), type(error).__name__)
    return paged
