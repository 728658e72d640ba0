"""The operations page's view of queues and waits (gateway.operations.monitor) and of the
workers alive (gateway.operations.workers), or why not."""

from __future__ import annotations

import logging

from gateway.operations.monitor import Snapshot, take_snapshot
from gateway.operations.workers import WorkerSeen, roll_call
from schemas.settings import Settings

log = logging.getLogger(__name__)


def snapshot_or_reason(settings: Settings) -> tuple[Snapshot | None, str | None]:
    """The system's snapshot, or None and the reason the broker or ledger did not answer."""
    try:
        return take_snapshot(settings), None
    except Exception as error:  # noqa: BLE001 - any broker failure is shown, never fatal
        log.warning("operations snapshot failed: %s", type(error).__name__)
        return None, f"the broker or ledger did not answer ({type(error).__name__})"


def workers_or_reason(settings: Settings) -> tuple[list[WorkerSeen] | None, str | None]:
    """The workers alive and gone (gateway.operations.workers), or None and the reason the
    broker did not answer."""
    try:
        return roll_call(settings), None
    except Exception as error:  # noqa: BLE001 - any broker failure is shown, never fatal
        log.warning("operations roll call failed: %s", type(error).__name__)
        return None, f"the broker did not answer the roll call ({type(error).__name__})"
