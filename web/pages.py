"""The server-rendered pages: login, worklist, studies, one study, operations, performance.

Writes (acknowledge, finding, retry) are plain HTML forms with the session's CSRF token; each
answers with a redirect back to the page it came from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ledger import audit, deliveries, output_drift, performance, reads, worklist
from ledger.failures import failed_scans
from ledger.findings import FindingError, NewFinding, add_finding
from ledger.study_views import StudyFilter, studies_page, study_view
from schemas.tables import STUDY_STATUSES
from web import login
from web.identity import Principal, address, check_csrf, permitted
from web.images import key_image_png
from web.permissions import Action, allowed

router = APIRouter(include_in_schema=False)
PER_PAGE = 50
WORKLIST_ROWS = 100  # a page of the worklist, most urgent first
FormText = Annotated[str | None, Form()]


def render(request: Request, name: str, principal: Principal | None, **context: Any) -> Response:  # noqa: ANN401
    context.update(principal=principal, allowed=allowed, now=datetime.now(UTC))
    return request.app.state.templates.TemplateResponse(request, name, context)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return render(
        request, "login.html", None, failed=False, oidc=request.app.state.oidc is not None
    )


@router.post("/login")
def login_submit(
    request: Request,
    username: FormText = None,
    password: FormText = None,
    csrf_token: FormText = None,
) -> Response:
    check_csrf(request, None, csrf_token)
    outcome = login.attempt(request, username or "", password or "")
    if outcome is None:
        return RedirectResponse("/", status_code=303)
    response = render(
        request, "login.html", None, failed=outcome, oidc=request.app.state.oidc is not None
    )
    response.status_code = 429 if "many" in outcome else 401
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: FormText = None) -> Response:
    check_csrf(request, None, csrf_token)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/", response_class=HTMLResponse)
def worklist_page(
    request: Request,
    principal: Annotated[Principal, Depends(permitted(Action.view_worklist))],
    tab: str = "open",
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    return render(request, "worklist.html", principal, **_worklist(request, tab, page))


@router.get("/worklist/rows", response_class=HTMLResponse)
def worklist_rows(
    request: Request,
    principal: Annotated[Principal, Depends(permitted(Action.view_worklist))],
    tab: str = "open",
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    return render(request, "worklist_rows.html", principal, **_worklist(request, tab, page))


def _worklist(request: Request, tab: str, page: int) -> dict[str, Any]:
    """One page of the tab's entries (most urgent first), how many there are, how many pages."""
    cases, total = reads.worklist_page(
        request.app.state.engine, tab == "acknowledged", page, WORKLIST_ROWS
    )
    pages = max(1, -(-total // WORKLIST_ROWS))
    return {"cases": cases, "tab": tab, "total": total, "page": page, "pages": pages}


def _day(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise HTTPException(status_code=400, detail=f"date {text!r} is not YYYY-MM-DD") from None


@router.get("/studies", response_class=HTMLResponse)
def studies_list(
    request: Request,
    principal: Annotated[Principal, Depends(permitted(Action.view_study))],
    status: str = "",
    predicted: str = "",
    since: str = "",
    until: str = "",
    page: int = 1,
) -> Response:
    if status and status not in STUDY_STATUSES:
        raise HTTPException(status_code=400, detail=f"status {status!r} is unknown")
    if predicted not in ("", "0", "1", "2"):
        raise HTTPException(status_code=400, detail=f"class {predicted!r} must be 0, 1 or 2")
    chosen = StudyFilter(
        status or None, int(predicted) if predicted else None, _day(since), _day(until)
    )
    rows, total = studies_page(request.app.state.engine, chosen, page, PER_PAGE)
    filters = {"status": status, "predicted": predicted, "since": since, "until": until}
    return render(
        request, "studies.html", principal, rows=rows, total=total, page=page,
        pages=max(1, -(-total // PER_PAGE)), filters=filters, statuses=STUDY_STATUSES,
    )  # fmt: skip


@router.get("/studies/{study_uid}", response_class=HTMLResponse)
def study_page(
    request: Request,
    study_uid: str,
    principal: Annotated[Principal, Depends(permitted(Action.view_study))],
) -> Response:
    engine = request.app.state.engine
    study = study_view(engine, study_uid, principal.name, address(request), "view_study")
    if study is None:
        raise HTTPException(status_code=404, detail="no such study")
    return render(
        request, "study.html", principal, study=study, error=request.query_params.get("error")
    )


@router.get("/studies/{study_uid}/key-image.png")
def key_image(
    request: Request,
    study_uid: str,
    principal: Annotated[Principal, Depends(permitted(Action.view_study))],
) -> Response:
    png = key_image_png(request.app.state.engine, study_uid)
    if png is None:
        raise HTTPException(status_code=404, detail="no key image for this study")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


def _back_to(study_uid: str, error: str | None = None) -> Response:
    from urllib.parse import quote, urlencode

    query = f"?{urlencode({'error': error})}" if error else ""
    return RedirectResponse(f"/studies/{quote(study_uid, safe='')}{query}", status_code=303)


@router.post("/studies/{study_uid}/ack")
def acknowledge(
    request: Request,
    study_uid: str,
    principal: Annotated[Principal, Depends(permitted(Action.acknowledge))],
    csrf_token: FormText = None,
) -> Response:
    check_csrf(request, principal, csrf_token)
    moment = worklist.acknowledge(
        request.app.state.engine, study_uid, principal.name, address(request)
    )
    return _back_to(study_uid, None if moment else "this study is not on the urgent worklist")


@router.post("/studies/{study_uid}/findings")
def record_finding(
    request: Request,
    study_uid: str,
    principal: Annotated[Principal, Depends(permitted(Action.record_finding))],
    urgent: FormText = None,
    finding_class: FormText = None,
    comment: FormText = None,
    csrf_token: FormText = None,
) -> Response:
    check_csrf(request, principal, csrf_token)
    if urgent not in ("yes", "no") or finding_class not in ("0", "1", "2"):
        return _back_to(study_uid, "choose urgent yes/no and a class 0, 1 or 2")
    finding = NewFinding(urgent == "yes", int(finding_class), comment)
    try:
        found = add_finding(
            request.app.state.engine, study_uid, principal.name, finding, address(request)
        )
    except FindingError as error:
        return _back_to(study_uid, str(error))
    if found is None:
        raise HTTPException(status_code=404, detail="no such study")
    return _back_to(study_uid)


@router.get("/operations", response_class=HTMLResponse)
def operations_page(
    request: Request, principal: Annotated[Principal, Depends(permitted(Action.view_operations))]
) -> Response:
    from web.operations import snapshot_or_reason, workers_or_reason

    engine = request.app.state.engine
    snapshot, reason = snapshot_or_reason(request.app.state.settings)
    workers, workers_reason = workers_or_reason(request.app.state.settings)
    outbox = [row for row in deliveries.list_deliveries(engine) if row["status"] != "delivered"]
    return render(
        request, "operations.html", principal, snapshot=snapshot, reason=reason,
        workers=workers, workers_reason=workers_reason, outbox=outbox,
        failed=failed_scans(engine),
    )  # fmt: skip


@router.post("/operations/deliveries/{delivery_id}/retry")
def retry_delivery(
    request: Request,
    delivery_id: str,
    principal: Annotated[Principal, Depends(permitted(Action.retry_delivery))],
    csrf_token: FormText = None,
) -> Response:
    check_csrf(request, principal, csrf_token)
    if not deliveries.retry_now(
        request.app.state.engine, delivery_id, principal.name, address(request)
    ):
        raise HTTPException(status_code=404, detail="no such delivery waiting")
    return RedirectResponse("/operations", status_code=303)


@router.get("/performance", response_class=HTMLResponse)
def performance_page(
    request: Request, principal: Annotated[Principal, Depends(permitted(Action.view_performance))]
) -> Response:
    engine = request.app.state.engine
    marked = performance.with_bands(
        performance.reader_agreement(engine), performance.reference_bands(engine)
    )
    streaks = performance.days_outside(marked)
    alerts = {version: days for version, days in streaks.items() if days >= performance.DRIFT_DAYS}
    inputs = performance.with_input_bands(
        performance.input_distribution(engine), performance.input_bands(engine)
    )
    outputs = output_drift.output_by_day(engine, output_drift.output_references(engine))
    return render(
        request, "performance.html", principal, agreement=marked, alerts=alerts,
        drift=performance.output_distribution(engine), drift_days=performance.DRIFT_DAYS,
        inputs=inputs, input_alerts=performance.latest_judged(inputs),
        min_scans_judged=performance.MIN_SCANS_JUDGED,
        outputs=outputs, output_alerts=output_drift.latest_judged(outputs),
        psi_alert=output_drift.PSI_ALERT, min_output_scans=output_drift.MIN_SCANS_JUDGED,
    )  # fmt: skip


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request, principal: Annotated[Principal, Depends(permitted(Action.view_audit))]
) -> Response:
    rows = audit.events(request.app.state.engine, limit=500)
    return render(request, "audit.html", principal, rows=rows[::-1])
