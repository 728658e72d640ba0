"""The idle-study closer on a real SQLite ledger, with an injected clock and publisher (no
broker, no sleeps): a study closes only once idle, its held slices are queued and published
once, and a failing round never stops the closer."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa

from gateway.intake.study_closer import StudyCloser
from ledger import scans as ledger
from ledger.database import engine_for
from ledger.statements import scans, studies
from ledger.studies import StudyRef
from schemas.messages import Priority
from schemas.settings import Settings
from schemas.tables import utcnow
from testkit.services import wait_until
from tests.gateway.intake.conftest import Published


def receive(settings: Settings, study_uid: str, count: int, priority: str = "routine") -> list[str]:
    """`count` slices of one study, held as an association leaves them (study `receiving`)."""
    ref = StudyRef(study_uid, "ACC-1", "PAT-1")
    new = [ledger.NewScan(str(uuid.uuid4()), bytes(4096), "ACC-1", "f", ref) for _ in range(count)]
    return ledger.add_scans(
        engine_for(settings.resolved_database_url), new, priority, hold=True
    ).new


def rows(settings: Settings, table: sa.Table) -> list[sa.Row]:
    with engine_for(settings.resolved_database_url).begin() as connection:
        return connection.execute(sa.select(table)).all()


def idle_later(settings: Settings):  # noqa: ANN201 - a clock
    return lambda: utcnow() + timedelta(seconds=settings.study_idle_seconds + 1)


def test_a_study_closes_once_idle_and_its_slices_are_published_once(settings: Settings) -> None:
    ids = receive(settings, "1.2.826.0.1.88.1", 3, priority="stat")
    assert {row.status for row in rows(settings, scans)} == {"held"}
    published = Published()
    closer = StudyCloser(settings, publish=published)
    assert closer.close_once() == 0 and published.calls == []  # not idle yet
    closer.clock = idle_later(settings)
    assert closer.close_once() == 1
    assert len(published.calls) == 1
    assert sorted(published.calls[0][0]) == sorted(ids) and published.calls[0][1] == Priority.stat
    assert {row.status for row in rows(settings, scans)} == {"queued"}
    assert all(row.published_at is not None for row in rows(settings, scans))
    assert [row.status for row in rows(settings, studies)] == ["queued"]
    assert closer.close_once() == 0 and len(published.calls) == 1  # closed studies stay closed


def test_a_failing_round_does_not_stop_the_closer(settings: Settings) -> None:
    receive(settings, "1.2.826.0.1.88.7", 1)
    calls: list[int] = []

    def broker_down(scan_ids: Sequence[str], _priority: Priority, _settings: Settings) -> int:
        calls.append(len(scan_ids))
        raise ConnectionError("broker down")

    closer = StudyCloser(settings, interval=0.01, publish=broker_down)
    closer.clock = idle_later(settings)
    stop = threading.Event()
    thread = closer.start(stop)
    wait_until(lambda: calls, what="a closing round", timeout=5)
    wait_until(lambda: closer.close_once() == 0, what="a later round", timeout=5)
    assert thread.is_alive()
    stop.set()
    thread.join(timeout=5)
    assert calls == [1]  # queued in the ledger: the reconciler re-sends what was not published
    assert [row.status for row in rows(settings, scans)] == ["queued"]
    assert [row.published_at for row in rows(settings, scans)] == [None]
