"""Server-sent events: the live worklist tells open pages when to fetch their rows again.

One `WorklistWatch` a process polls `ledger.reads.worklist_version` (one small query) every
POLL_S while any stream is open, and wakes every stream when it changed: fifty open pages
cost one query each POLL_S, not fifty. Each stream checks its account again every RECHECK_S,
so a disabled user's stream ends too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import Engine

from ledger.reads import worklist_version
from web.identity import NotLoggedIn, Principal, current_principal, permitted
from web.permissions import Action

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
POLL_S = 0.5
RECHECK_S = 5.0
KEEPALIVE_S = 15.0


class WorklistWatch:
    """The worklist's version, polled once for every open stream of this process; each
    change bumps `generation` and wakes the streams that wait on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.generation = 0
        self._changed = anyio.Event()
        self._listeners = 0
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        seen = None
        try:
            while self._listeners:
                version = await self._version()
                if seen is not None and version is not None and version != seen:
                    self.generation += 1
                    changed, self._changed = self._changed, anyio.Event()
                    changed.set()
                seen = version if version is not None else seen
                await anyio.sleep(POLL_S)
        finally:
            self._task = None  # no await since the check: a new listener starts a new poll

    async def _version(self) -> str | None:
        """The worklist's version, or None when the ledger did not answer (tried again)."""
        try:
            return await anyio.to_thread.run_sync(worklist_version, self.engine)
        except Exception as error:  # noqa: BLE001 - a ledger outage must not end the watch
            log.warning("worklist watch: the ledger did not answer (%s)", type(error).__name__)
            return None

    def join(self) -> int:
        """A stream opens: poll if nobody did; returns the generation it starts from."""
        self._listeners += 1
        if self._task is None:
            self._task = asyncio.create_task(self._poll())
        return self.generation

    def leave(self) -> None:
        self._listeners -= 1

    async def wait(self, generation: int, timeout: float) -> int:
        """The generation once it is past `generation`, or after `timeout` seconds."""
        if self.generation == generation:
            with anyio.move_on_after(timeout):
                await self._changed.wait()
        return self.generation


def watch_of(request: Request) -> WorklistWatch:
    """The app's one watch (made with the first stream)."""
    state = request.app.state
    if getattr(state, "worklist_watch", None) is None:
        state.worklist_watch = WorklistWatch(state.engine)
    return state.worklist_watch


async def _stream(request: Request) -> AsyncIterator[str]:
    watch = watch_of(request)
    seen = watch.join()
    try:
        yield "retry: 1000\nevent: hello\ndata: ready\n\n"
        checked = sent = time.monotonic()
        while not await request.is_disconnected():
            generation = await watch.wait(seen, POLL_S)
            now = time.monotonic()
            if now - checked >= RECHECK_S:
                try:
                    await anyio.to_thread.run_sync(current_principal, request)
                except NotLoggedIn:
                    yield "event: logout\ndata: gone\n\n"
                    return
                checked = now
            if generation != seen:
                seen, sent = generation, now
                yield "event: worklist\ndata: changed\n\n"
            elif now - sent >= KEEPALIVE_S:
                sent = now
                yield ": keep-alive\n\n"
    finally:
        watch.leave()


@router.get("/events/worklist")
async def worklist_events(
    request: Request, principal: Annotated[Principal, Depends(permitted(Action.view_worklist))]
) -> StreamingResponse:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(request), media_type="text/event-stream", headers=headers)
