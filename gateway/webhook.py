"""Paging clinicians: a log line (scan id only) and the optional webhook (`TRIAGE_NOTIFY_URL`)
for each new worklist case; the ledger records the pages that went out."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Sequence

import sqlalchemy.exc

from ledger import worklist
from ledger.database import engine_for
from schemas.settings import Settings

log = logging.getLogger(__name__)
NOTIFY_TIMEOUT_S = 3.0


def notify(url: str, scan_id: str) -> bool:
    """POST {"scan_id": ...} to the webhook; a failure is logged, never fatal."""
    request = urllib.request.Request(
        url,
        data=json.dumps({"scan_id": scan_id}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=NOTIFY_TIMEOUT_S) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError) as error:
        log.error("urgent scan %s: webhook failed (%s)", scan_id, type(error).__name__)
        return False


def page_clinicians(settings: Settings, scan_ids: Sequence[str]) -> list[str]:
    """Page each new worklist case (log line, webhook if set); record the pages that went out.

    A case whose page failed (webhook down, worker killed) keeps no `notified_at`, and the
    reconciler pages it again.
    """
    paged = []
    for scan_id in scan_ids:
        log.warning("URGENT scan %s is on the worklist", scan_id)
        if not settings.notify_url or notify(settings.notify_url, scan_id):
            paged.append(scan_id)
    if paged:
        try:
            worklist.mark_notified(engine_for(settings.resolved_database_url), paged)
        except sqlalchemy.exc.SQLAlchemyError as error:  # paged again later: twice beats never
            log.error("could not record %d pages: %s", len(paged), type(error).__name__)
    return paged
