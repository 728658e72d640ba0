"""Server-sent events: the live worklist tells open pages when to fetch their rows again.

Each stream polls `ledger.reads.worklist_version` (one small query) every POLL_S and sends a
`worklist` event when it changed; it checks the account again every RECHECK_S, so a disabled
user's stream ends too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ledger.reads import worklist_version
from web.identity import NotLoggedIn, Principal, current_principal, permitted
from web.permissions import Action

router = APIRouter(include_in_schema=False)
POLL_S = 0.5
RECHECK_S = 5.0
KEEPALIVE_S = 15.0


async def _stream(request: Request) -> AsyncIterator[str]:
    engine = request.app.state.engine
    seen = await anyio.to_thread.run_sync(worklist_version, engine)
    yield "retry: 1000\nevent: hello\ndata: ready\n\n"
    checked = sent = time.monotonic()
    while not await request.is_disconnected():
        await anyio.sleep(POLL_S)
        now = time.monotonic()
        if now - checked >= RECHECK_S:
            try:
                await anyio.to_thread.run_sync(current_principal, request)
            except NotLoggedIn:
                yield "event: logout\ndata: gone\n\n"
                return
            checked = now
        version = await anyio.to_thread.run_sync(worklist_version, engine)
        if version != seen:
            seen, sent = version, now
            yield "event: worklist\ndata: changed\n\n"
        elif now - sent >= KEEPALIVE_S:
            sent = now
            yield ": keep-alive\n\n"


@router.get("/events/worklist")
async def worklist_events(
    request: Request, principal: Annotated[Principal, Depends(permitted(Action.view_worklist))]
) -> StreamingResponse:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(request), media_type="text/event-stream", headers=headers)
