"""A login with a built-in account: throttled, audited, the session renewed on success."""

from __future__ import annotations

from fastapi import Request

from ledger import accounts, audit
from web.identity import SESSION_CSRF, SESSION_SINCE, SESSION_USER, address, now
from web.passwords import hash_password, needs_rehash, verify_password

MAX_NAME = 128


def attempt(request: Request, username: str, password: str) -> str | None:
    """Log in as `username`: None on success (the session names the user), else the reason
    to show. Each attempt is an audit row; failures count against the user and the address."""
    engine = request.app.state.engine
    throttle = request.app.state.throttle
    where = address(request)
    name = username.strip()[:MAX_NAME]
    if throttle.blocked(name, where):
        audit.record_alone(engine, name or "-", "login_throttled", address=where)
        return "too many failed logins: wait a few minutes"
    found = accounts.user(engine, name) if name else None
    good = verify_password(found.password_hash if found else None, password)
    if not good or found is None or found.disabled:
        throttle.failed(name, where)
        audit.record_alone(engine, name or "-", "login_failed", address=where)
        return "wrong user name or password, or the account is disabled"
    throttle.succeeded(name)
    if needs_rehash(found.password_hash):
        accounts.set_password_hash(engine, name, hash_password(password))
    start_session(request, name, "login")
    return None


def start_session(request: Request, name: str, action: str, detail: str | None = None) -> None:
    """Audit the login, then a fresh session (and CSRF token) naming the user."""
    audit.record_alone(
        request.app.state.engine, name, action, address=address(request), detail=detail
    )
    request.session.clear()
    request.session[SESSION_USER] = name
    request.session[SESSION_SINCE] = now()
    request.session.pop(SESSION_CSRF, None)
