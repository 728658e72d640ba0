"""Paging clinicians: a log line (our ids only) for each new worklist case, recorded in the
ledger. The webhook is an outbox channel (gateway/outbox/webhook.py), not sent from here."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ledger import worklist
from ledger.database import engine_for
from schemas.settings import Settings

log = logging.getLogger(__name__)


def page_clinicians(settings: Settings, scan_ids: Sequence[str]) -> list[str]:
    """Page each new worklist case (a log line naming our ids); record the pages.

    A case whose page never went out (the worker died between the worklist and the log) keeps
    no `notified_at`, and the reconciler pages it again. Never raises: the worklist row is
    already committed. The webhook is the outbox's (`deliveries` queue), not sent from here.
    """
    for scan_id in scan_ids:
        log.warning("URGENT scan %s is on the worklist", scan_id)
    paged = list(scan_ids)
    if paged:
        try:
            worklist.mark_notified(engine_for(settings.resolved_database_url), paged)
        except Exception as error:  # paged again later: twice beats never
            log.error("could not record %d pages: %s", len(paged), type(error).__name__)
    return paged
