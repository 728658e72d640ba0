"""Who is asking: a session cookie (built-in accounts) or an API token, and what they may do.

A session names its user and when they logged in; the account is read again on every
request, so a disabled user is out at the next one, and a session older than
`web_session_seconds` is ended however busy it was (the cookie's own expiry slides with use).
`permitted(action)` is the dependency every route uses.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from fastapi import HTTPException, Request

from ledger import accounts
from web.passwords import token_digest
from web.permissions import Action, allowed

SESSION_USER = "user"
SESSION_SINCE = "since"  # epoch seconds of the login
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Principal:
    """A logged-in user or an API token: its name (for the audit trail) and role."""

    name: str
    role: str
    via: str  # "session" or "token"


def now() -> float:
    """Wall-clock seconds (one name, so a test can move the clock)."""
    return time.time()


class NotLoggedIn(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=401, detail="log in first")


def address(request: Request) -> str | None:
    return request.client.host if request.client else None


def current_principal(request: Request) -> Principal:
    """The principal of this request, or NotLoggedIn (a disabled user's session is ended)."""
    engine = request.app.state.engine
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        found = accounts.token(engine, token_digest(header[7:].strip()))
        if found is None:
            raise NotLoggedIn()
        return Principal(found.name, found.role, "token")
    name = request.session.get(SESSION_USER)
    since = request.session.get(SESSION_SINCE, 0)
    if not name or now() - since > request.app.state.settings.web_session_seconds:
        request.session.clear()
        raise NotLoggedIn()
    found = accounts.user(engine, name)
    if found is None or found.disabled:
        request.session.clear()
        raise NotLoggedIn()
    return Principal(found.name, found.role, "session")


def permitted(action: Action):  # noqa: ANN201 - a FastAPI dependency
    """A dependency: the principal, if its role may do `action` (else 401 or 403)."""

    def dependency(request: Request) -> Principal:
        principal = current_principal(request)
        if not allowed(principal.role, action):
            raise HTTPException(status_code=403, detail=f"role {principal.role} may not {action}")
        return principal

    return dependency


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get(SESSION_CSRF)
    if not token:
        token = request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, principal: Principal | None, sent: str | None) -> None:
    """Refuse (403) a cookie-authenticated write without this session's CSRF token; a token
    request carries no cookie a browser could send for someone else."""
    if principal is not None and principal.via == "token":
        return
    expected = request.session.get(SESSION_CSRF)
    sent = sent or request.headers.get(CSRF_HEADER)
    if not expected or not sent or not secrets.compare_digest(expected, sent):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")


class LoginThrottle:
    """Failed logins per user name and per address within a window (in this process)."""

    def __init__(self, attempts: int, window_s: float) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def blocked(self, user: str, where: str | None) -> bool:
        now = time.monotonic()
        keys = (f"user:{user}", f"address:{where}")
        return any(len(self._recent(key, now)) >= self.attempts for key in keys)

    def failed(self, user: str, where: str | None) -> None:
        now = time.monotonic()
        for key in (f"user:{user}", f"address:{where}"):
            self._recent(key, now).append(now)

    def succeeded(self, user: str) -> None:
        self._failures.pop(f"user:{user}", None)
