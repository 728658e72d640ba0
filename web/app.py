"""The web application: one FastAPI app with the pages, the live worklist and the JSON API.

`create_app` takes the settings; the ledger is the one they name. Sessions are signed cookies
(Starlette's SessionMiddleware: itsdangerous, HttpOnly, SameSite=Strict, Secure behind https)
that expire `web_session_seconds` after login. Pages answer a request without a login with a
redirect to /login, the API with 401.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from ledger.database import engine_for, require_schema
from schemas.settings import Settings
from web.identity import LoginThrottle, csrf_token

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "triage_session"


class UnsafeWebSettings(ValueError):
    """Settings `triage web` refuses to serve with (the message says which and why)."""


def session_key(settings: Settings) -> str:
    if settings.web_secret_key:
        return settings.web_secret_key
    if settings.environment == "production":
        raise UnsafeWebSettings(
            "TRIAGE_ENVIRONMENT=production needs TRIAGE_WEB_SECRET_KEY for the web page; "
            "generate one with `openssl rand -hex 32`"
        )
    log.warning("no TRIAGE_WEB_SECRET_KEY: sessions are signed with a key of this process only")
    return secrets.token_urlsafe(32)


def templates() -> Jinja2Templates:
    """The page templates; HTML is escaped by default (nothing from DICOM is marked safe)."""
    found = Jinja2Templates(directory=str(HERE / "templates"))
    found.env.globals["csrf_token"] = csrf_token
    return found


def create_app(settings: Settings) -> FastAPI:
    """The app on the ledger `settings` name (its schema must be current)."""
    from gateway.intake.receiver import StoreContext
    from web import api, dicomweb, drift_metrics, events, oidc, pages

    engine = engine_for(settings.resolved_database_url)
    require_schema(engine)
    app = FastAPI(
        title="triage",
        summary="Urgent worklist, studies, findings and audit of the lung-scan triage system.",
        openapi_url=None,  # served at /api/v1/openapi.json behind a login (api.py)
        docs_url=None,
        redoc_url=None,
        lifespan=_close_idle_studies,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.templates = templates()
    app.state.oidc = oidc.provider_client(settings)
    app.state.store_context = StoreContext(settings)  # STOW-RS in, as `triage receive`
    app.state.throttle = LoginThrottle(
        settings.web_login_attempts, settings.web_login_window_seconds
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_key(settings),
        session_cookie=SESSION_COOKIE,
        max_age=settings.web_session_seconds,
        same_site="strict",
        https_only=settings.web_https,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(oidc.router)
    app.include_router(events.router)
    app.include_router(drift_metrics.router)
    app.include_router(api.router)
    app.include_router(dicomweb.router)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_api_route("/healthz", _healthz, methods=["GET"], include_in_schema=False)
    return app


@contextlib.asynccontextmanager
async def _close_idle_studies(app: FastAPI) -> AsyncIterator[None]:
    """Studies received by STOW-RS close when idle, as the receiver's do (its StudyCloser)."""
    from gateway.intake.study_closer import StudyCloser

    stop = threading.Event()
    thread = StudyCloser(app.state.settings).start(stop)
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


async def _healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _http_error(request: Request, error: HTTPException) -> Response:
    """API: JSON; a page without a login: to /login; other page errors: a short page."""
    if request.url.path.startswith(("/api/", "/events/", "/metrics", "/dicom-web/")):
        return JSONResponse({"detail": error.detail}, status_code=error.status_code)
    if error.status_code == 401 and request.method == "GET":
        return RedirectResponse("/login", status_code=303)
    return request.app.state.templates.TemplateResponse(
        request, "error.html", {"error": error}, status_code=error.status_code
    )
