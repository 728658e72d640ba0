"""Idle studies out of the receiver: closed after `study_idle_seconds`, their slices queued.

DICOM has no "study complete" signal, so a study received over the network stays `receiving`
(its slices `held`) until no instance has arrived for `study_idle_seconds`. The receiver runs
`StudyCloser.run` in a thread; each round closes what went idle and publishes its slices. A
round that fails (database or broker down) is logged and tried again next round; slices left
queued but unpublished are re-sent by the reconciler, which also closes studies a dead
receiver left open.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.broker.publish import publish_jobs
from ledger import scans as scan_ledger
from ledger.database import engine_for
from ledger.studies import close_idle
from schemas.errors import describe
from schemas.messages import Priority
from schemas.settings import Settings
from schemas.tables import utcnow

log = logging.getLogger(__name__)


@dataclass
class StudyCloser:
    """Closes idle studies every `interval` seconds; `clock` and `publish` (ids, priority,
    settings) are injectable for tests."""

    settings: Settings
    interval: float = 1.0
    clock: Callable[[], datetime] = field(default=utcnow)
    publish: Callable[[Sequence[str], Priority, Settings], int] = field(default=publish_jobs)

    def close_once(self) -> int:
        """Close the studies idle since `study_idle_seconds` and publish their slices;
        returns how many studies closed."""
        engine = engine_for(self.settings.resolved_database_url)
        idle_before = self.clock() - timedelta(seconds=self.settings.study_idle_seconds)
        closed = close_idle(engine, idle_before)
        for priority, scan_ids in closed.to_publish.items():
            if scan_ids:
                self.publish(scan_ids, priority, self.settings)
                scan_ledger.mark_published(engine, scan_ids)
        if closed.studies:
            log.info("closed %d idle studies", closed.studies)
        return closed.studies

    def run(self, stop: threading.Event) -> None:
        """Round after round until `stop` is set; a failing round is logged, never fatal."""
        while not stop.wait(self.interval):
            try:
                self.close_once()
            except Exception as error:  # the database or broker is down: next round retries
                log.warning("closing idle studies failed (%s); trying again", describe(error))

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="study-closer", daemon=True)
        thread.start()
        return thread
