"""Logins through an OpenID Connect provider: a small real one (HTTP, RS256-signed ID tokens)
served by uvicorn on a free port, and the app's own routes driven by the test client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from ledger import accounts, audit
from schemas.settings import get_settings
from testkit.services import free_port, wait_until
from web.app import create_app
from web.oidc import role_of

CLIENT_ID = "triage-web"


class Provider:
    """An identity provider: discovery, authorize (always consents), token, keys."""

    def __init__(self, port: int, groups: list[str]) -> None:
        self.issuer = f"http://127.0.0.1:{port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.groups = groups
        self.nonces: dict[str, str] = {}
        self.app = Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/authorize", self.authorize),
            Route("/token", self.token, methods=["POST"]),
            Route("/jwks", self.jwks),
        ])  # fmt: skip

    async def discovery(self, request: Request) -> JSONResponse:
        return JSONResponse({
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })  # fmt: skip

    async def authorize(self, request: Request) -> RedirectResponse:
        query = request.query_params
        code = f"code-{len(self.nonces)}"
        self.nonces[code] = query["nonce"]
        return RedirectResponse(f"{query['redirect_uri']}?code={code}&state={query['state']}")

    async def token(self, request: Request) -> JSONResponse:
        code = (await request.form())["code"]
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": "u-42", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
            "nonce": self.nonces.pop(code), "preferred_username": "dr.lee", "groups": self.groups,
        }  # fmt: skip
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
        return JSONResponse({"access_token": "at", "token_type": "Bearer", "id_token": id_token})

    async def jwks(self, request: Request) -> JSONResponse:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})


@pytest.fixture
def provider() -> Iterator[Provider]:
    port = free_port()
    found = Provider(port, ["radiology", "staff"])
    server = uvicorn.Server(
        uvicorn.Config(found.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the identity provider", timeout=20)
    yield found
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def oidc_client(
    engine, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:  # noqa: ANN001
    monkeypatch.setenv("TRIAGE_WEB_OIDC_ISSUER", provider.issuer)
    monkeypatch.setenv("TRIAGE_WEB_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("TRIAGE_WEB_OIDC_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("TRIAGE_WEB_OIDC_ROLES", "radiology=clinician,it=operator")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as client:
        yield client


def log_in_through(client: TestClient) -> httpx.Response:
    """The browser's way: to the provider, back to the callback, on to complete."""
    to_provider = client.get("/login/oidc", follow_redirects=False)
    back = httpx.get(to_provider.headers["location"], follow_redirects=False)
    callback = urlsplit(back.headers["location"])
    page = client.get(f"{callback.path}?{callback.query}")
    assert "/login/oidc/complete?" in page.text
    return client.get(f"/login/oidc/complete?{callback.query}", follow_redirects=False)


def test_a_provider_login_maps_the_claim_to_a_role_and_can_be_disabled(
    oidc_client, engine, provider
) -> None:  # noqa: ANN001
    assert 'href="/login/oidc"' in oidc_client.get("/login").text
    assert log_in_through(oidc_client).status_code == 303
    assert "oidc:dr.lee (clinician)" in oidc_client.get("/").text
    assert accounts.user(engine, "oidc:dr.lee").role == "clinician"
    assert [(row["who"], row["action"], row["detail"]) for row in audit.events(engine)] == [
        ("oidc:dr.lee", "login", "oidc")
    ]
    accounts.disable_user(engine, "oidc:dr.lee")
    assert oidc_client.get("/", follow_redirects=False).status_code == 303
    assert log_in_through(oidc_client).status_code == 403


def test_a_claim_with_no_role_of_ours_is_refused(oidc_client, engine, provider) -> None:  # noqa: ANN001
    provider.groups = ["visitors"]
    assert log_in_through(oidc_client).status_code == 403
    assert accounts.user(engine, "oidc:dr.lee") is None
    assert audit.events(engine)[-1]["detail"] == "oidc: no role"


def test_a_forged_state_is_refused(oidc_client, engine) -> None:  # noqa: ANN001
    oidc_client.get("/login/oidc", follow_redirects=False)
    refused = oidc_client.get("/login/oidc/complete?code=x&state=forged", follow_redirects=False)
    assert refused.headers["location"] == "/login"  # a page's 401: back to the login
    (row,) = audit.events(engine)
    assert (row["action"], row["detail"]) == ("login_failed", "oidc: mismatching_state")
    assert oidc_client.get("/", follow_redirects=False).status_code == 303


def test_the_widest_mapped_role_wins() -> None:
    mapping = {"a": "clinician", "b": "admin", "c": "operator"}
    assert role_of({"groups": ["a", "c", "b"]}, "groups", mapping) == "admin"
    assert role_of({"groups": "a"}, "groups", mapping) == "clinician"
    assert role_of({}, "groups", mapping) is None


def test_the_role_pairs_name_our_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_WEB_OIDC_ROLES", "radiology=root")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="radiology=root"):
        get_settings()
