"""The JSON API under /api/v1, with the same permissions as the pages (one Action each).

Systems send `Authorization: Bearer <token>`; a browser session may call it too, with the
session's CSRF token in the X-CSRF-Token header for writes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ledger import audit, deliveries, reads, worklist
from ledger.findings import FindingError, NewFinding, add_finding
from ledger.study_views import StudyFilter, studies_page, study_view
from schemas.tables import STUDY_STATUSES
from web.identity import Principal, address, check_csrf, current_principal, permitted
from web.permissions import Action

router = APIRouter(prefix="/api/v1", tags=["api"])
PER_PAGE = 100
MAX_PER_PAGE = 1000


class FindingIn(BaseModel):
    """A reader's finding: urgent confirmed or not, their class, an optional comment."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    urgent: bool
    finding_class: int = Field(alias="class", ge=0, le=2)
    comment: str | None = Field(None, max_length=2000)


def _jsonable(study: dict[str, Any]) -> dict[str, Any]:
    study = dict(study)
    study.pop("card", None)
    return study


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> dict[str, Any]:
    current_principal(request)  # nothing but /healthz answers without a login
    return request.app.openapi()


def _json(value: Any) -> Response:  # noqa: ANN401 - rows of plain values and timestamps
    """Ledger rows as JSON at once (timestamps in ISO 8601), without FastAPI's per-field
    encoder: a long worklist is thousands of rows."""
    text = json.dumps(value, default=lambda moment: moment.isoformat(), separators=(",", ":"))
    return Response(text, media_type="application/json")


@router.get("/worklist", response_model=dict[str, Any])
def get_worklist(
    request: Request,
    principal: Annotated[Principal, Depends(permitted(Action.view_worklist))],
    acknowledged: bool = False,
    page: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description="Entries a page.")] = PER_PAGE,
) -> Response:
    """Open urgent studies (or the acknowledged ones), most urgent first, a page at a time:
    `total` counts them all, `next` is the next page's path (null on the last one)."""
    cases, total = reads.worklist_page(
        request.app.state.engine, acknowledged_only=acknowledged, page=page, per_page=limit
    )
    following = None
    if page * limit < total:
        query = urlencode(
            {"acknowledged": str(acknowledged).lower(), "page": page + 1, "limit": limit}
        )
        following = f"{request.url.path}?{query}"
    body = {"page": page, "per_page": limit, "total": total, "next": following, "cases": cases}
    return _json(body)


@router.get("/studies", response_model=dict[str, Any])
def get_studies(
    request: Request,
    principal: Annotated[Principal, Depends(permitted(Action.view_study))],
    status: Annotated[str | None, Query(description=", ".join(STUDY_STATUSES))] = None,
    since: datetime | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    """Studies, newest first, a page at a time."""
    if status is not None and status not in STUDY_STATUSES:
        raise HTTPException(
            status_code=422, detail=f"status {status!r} is not one of {STUDY_STATUSES}"
        )
    rows, total = studies_page(
        request.app.state.engine, StudyFilter(status, since=since), page, PER_PAGE
    )
    return _json({"page": page, "per_page": PER_PAGE, "total": total, "studies": rows})


@router.get("/studies/{study_uid}")
def get_study(
    request: Request,
    study_uid: str,
    principal: Annotated[Principal, Depends(permitted(Action.view_study))],
) -> dict[str, Any]:
    """One study: decision, slices, worklist entry, deliveries, findings (the view is audited)."""
    engine = request.app.state.engine
    study = study_view(engine, study_uid, principal.name, address(request), "view_study_api")
    if study is None:
        raise HTTPException(status_code=404, detail="no such study")
    return _jsonable(study)


@router.post("/studies/{study_uid}/ack")
def post_ack(
    request: Request,
    study_uid: str,
    principal: Annotated[Principal, Depends(permitted(Action.acknowledge))],
) -> dict[str, Any]:
    """Mark the urgent study reviewed by the caller."""
    check_csrf(request, principal, None)
    moment = worklist.acknowledge(
        request.app.state.engine, study_uid, principal.name, address(request)
    )
    if moment is None:
        raise HTTPException(status_code=404, detail="no such study on the urgent worklist")
    return {"study_uid": study_uid, "acknowledged_at": moment}


@router.post("/studies/{study_uid}/findings", status_code=201)
def post_finding(
    request: Request,
    study_uid: str,
    body: FindingIn,
    principal: Annotated[Principal, Depends(permitted(Action.record_finding))],
) -> dict[str, Any]:
    """Record the caller's finding; a later one supersedes it (the history is kept)."""
    check_csrf(request, principal, None)
    finding = NewFinding(body.urgent, body.finding_class, body.comment)
    try:
        found = add_finding(
            request.app.state.engine, study_uid, principal.name, finding, address(request)
        )
    except FindingError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    if found is None:
        raise HTTPException(status_code=404, detail="no such study")
    return {"study_uid": study_uid, "who": principal.name, **body.model_dump(by_alias=True)}


@router.get("/audit")
def get_audit(
    request: Request,
    principal: Annotated[Principal, Depends(permitted(Action.view_audit))],
    since: datetime | None = None,
    study: str | None = None,
) -> list[dict[str, Any]]:
    """The audit trail, oldest first (admin)."""
    return audit.events(request.app.state.engine, since=since, study_key=study)


@router.post("/deliveries/{delivery_id}/retry")
def post_retry(
    request: Request,
    delivery_id: str,
    principal: Annotated[Principal, Depends(permitted(Action.retry_delivery))],
) -> dict[str, str]:
    """Make a pending or failed delivery due now (operator)."""
    check_csrf(request, principal, None)
    if not deliveries.retry_now(
        request.app.state.engine, delivery_id, principal.name, address(request)
    ):
        raise HTTPException(status_code=404, detail="no such delivery waiting")
    return {"delivery_id": delivery_id, "status": "pending"}


@router.get("/workers")
def get_workers(
    request: Request,
    principal: Annotated[Principal, Depends(permitted(Action.view_operations))],
) -> dict[str, Any]:
    """The Celery workers answering on the broker and the queues each consumes, and those
    seen before that answer no more (`alive` false); 503 when the broker does not answer."""
    from web.operations import workers_or_reason

    workers, reason = workers_or_reason(request.app.state.settings)
    if workers is None:
        raise HTTPException(status_code=503, detail=reason)
    return {"workers": [asdict(worker) for worker in workers]}
