"""Logins through the hospital's identity provider (OpenID Connect, authorization code flow,
Authlib's Starlette client), one claim mapped to our roles.

The provider sends the browser back cross-site, and a SameSite=Strict session cookie is not
sent on that request; so /login/oidc/callback only answers a page that moves on, same-site,
to /login/oidc/complete, where the cookie (with Authlib's state and nonce) comes along and the
code is exchanged. The user then has an account row (`ledger.accounts.sync_external_user`):
the role follows the claims at every login, and `triage users disable` works as for others.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from ledger import accounts, audit
from schemas.settings import Settings
from web.identity import address
from web.login import start_session

router = APIRouter(include_in_schema=False)
PROVIDER = "hospital"
RANK = ("clinician", "operator", "admin")  # several mapped values: the widest role wins


def provider_client(settings: Settings):  # noqa: ANN201 - Authlib's StarletteOAuth2App
    """The identity provider's client, or None when none is configured."""
    if not (settings.web_oidc_issuer and settings.web_oidc_client_id):
        return None
    oauth = OAuth()
    oauth.register(
        PROVIDER,
        client_id=settings.web_oidc_client_id,
        client_secret=settings.web_oidc_client_secret,
        server_metadata_url=settings.web_oidc_issuer.rstrip("/")
        + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile email"},
    )
    return oauth.create_client(PROVIDER)


def role_of(claims: dict[str, Any], claim: str, mapping: dict[str, str]) -> str | None:
    """Our role for these ID-token claims: the widest one any value of `claim` maps to."""
    values = claims.get(claim)
    values = [values] if isinstance(values, str) else list(values or [])
    roles = {mapping[value] for value in values if isinstance(value, str) and value in mapping}
    return max(roles, key=RANK.index) if roles else None


def _client(request: Request):  # noqa: ANN202
    client = request.app.state.oidc
    if client is None:
        raise HTTPException(status_code=404, detail="no identity provider is configured")
    return client


@router.get("/login/oidc")
async def oidc_start(request: Request) -> Response:
    return await _client(request).authorize_redirect(request, str(request.url_for("oidc_callback")))


@router.get("/login/oidc/callback", name="oidc_callback")
def oidc_callback(request: Request) -> Response:
    query = request.url.query
    return request.app.state.templates.TemplateResponse(
        request, "oidc_continue.html", {"next": f"/login/oidc/complete?{query}", "principal": None}
    )


@router.get("/login/oidc/complete")
async def oidc_complete(request: Request) -> Response:
    settings = request.app.state.settings
    engine = request.app.state.engine
    try:
        token = await _client(request).authorize_access_token(request)
    except OAuthError as error:
        audit.record_alone(
            engine, "-", "login_failed", address=address(request), detail=f"oidc: {error.error}"
        )
        raise HTTPException(
            status_code=401, detail="the identity provider's answer was refused"
        ) from None
    claims = dict(token.get("userinfo") or {})
    name = f"oidc:{claims.get('preferred_username') or claims['sub']}"[:128]
    role = role_of(claims, settings.web_oidc_role_claim, settings.web_oidc_roles)
    if role is None:
        audit.record_alone(
            engine, name, "login_failed", address=address(request), detail="oidc: no role"
        )
        raise HTTPException(status_code=403, detail="your account has no role in triage")
    account = accounts.sync_external_user(engine, name, role)
    if account.disabled:
        audit.record_alone(
            engine, name, "login_failed", address=address(request), detail="oidc: disabled"
        )
        raise HTTPException(status_code=403, detail="this account is disabled")
    start_session(request, name, "login", detail="oidc")
    return RedirectResponse("/", status_code=303)
