"""DICOMweb STOW-RS in: `POST /dicom-web/studies`, the receiver's C-STORE contract over HTTP.

A bearer API token whose role may `store_studies` (operator, admin: the PACS integration's
machine account, `triage tokens create pacs --role operator`) is required; a session cookie
is not enough (a browser's form must not store into the ledger). The body streams to disk
part by part (gateway.intake.stow, within TRIAGE_MAX_FILE_BYTES per instance and
TRIAGE_DICOMWEB_MAX_REQUEST_BYTES in all); every instance is stored as `triage receive`
stores one, and the answer is the PS3.18 response (application/dicom+json).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.intake.stow import StowReader, StowRequestError, store_parts, stow_response
from web.identity import Principal, permitted
from web.permissions import Action

router = APIRouter(prefix="/dicom-web")
DICOM_JSON = "application/dicom+json"


def _spool_directory(request: Request) -> Path:
    directory = request.app.state.settings.resolved_data_dir / "stow"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@router.post("/studies")
async def post_studies(
    request: Request,
    principal: Annotated[Principal, Depends(permitted(Action.store_studies))],
) -> JSONResponse:
    """Store the instances of a multipart/related body; the PS3.18 response."""
    if principal.via != "token":
        raise HTTPException(status_code=401, detail="STOW-RS needs a bearer API token")
    settings = request.app.state.settings
    with tempfile.TemporaryDirectory(dir=_spool_directory(request)) as spool:
        try:
            reader = StowReader(
                request.headers.get("content-type", ""),
                Path(spool),
                settings.max_file_bytes,
                settings.dicomweb_max_request_bytes,
            )
            try:
                async for chunk in request.stream():
                    await run_in_threadpool(reader.feed, chunk)  # disk writes off the loop
                parts = reader.finish()
            finally:
                reader.close()
        except StowRequestError as error:
            return JSONResponse({"detail": str(error)}, status_code=error.status)
        outcomes = await run_in_threadpool(store_parts, parts, request.app.state.store_context)
    status, body = stow_response(outcomes)
    return JSONResponse(body, status_code=status, media_type=DICOM_JSON)
