"""Who may use the web page and the API: built-in accounts and API tokens.

Passwords arrive here already hashed (argon2id, by `web.passwords`); tokens as their SHA-256.
Names are unique; a disabled account or a revoked token is kept (the audit trail names it).
A user who logs in through the hospital's identity provider gets a row too (no password,
the role its claims map to), so `triage users disable` ends their sessions like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.statements import api_tokens, users
from schemas.tables import ROLES, utcnow


class AccountError(ValueError):
    """An account or token cannot be made or changed as asked (the message says why)."""


@dataclass(frozen=True)
class Account:
    """A user or token as the web edge sees it."""

    name: str
    role: str
    disabled: bool = False
    password_hash: str = ""


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is unknown: use one of {', '.join(ROLES)}")


def add_user(engine: Engine, name: str, role: str, password_hash: str) -> None:
    """A new account; refused if the name is taken or the role unknown."""
    _check_role(role)
    if not name or len(name) > 128 or name != name.strip():
        raise AccountError(f"user name {name!r} must be 1-128 characters without outer spaces")
    with engine.begin() as connection:
        if connection.execute(sa.select(users.c.name).where(users.c.name == name)).first():
            raise AccountError(f"user {name!r} exists already")
        connection.execute(
            users.insert().values(
                name=name,
                role=role,
                password_hash=password_hash,
                disabled=False,
                created_at=utcnow(),
            )
        )


def user(engine: Engine, name: str) -> Account | None:
    """The account named `name`, or None."""
    with engine.begin() as connection:
        row = connection.execute(sa.select(users).where(users.c.name == name)).first()
    if row is None:
        return None
    return Account(row.name, row.role, bool(row.disabled), row.password_hash)


def list_users(engine: Engine) -> list[Account]:
    with engine.begin() as connection:
        rows = connection.execute(sa.select(users).order_by(users.c.name)).all()
    return [Account(row.name, row.role, bool(row.disabled)) for row in rows]


EXTERNAL_HASH = "!external"  # never a valid argon2 hash: no password login for this user


def sync_external_user(engine: Engine, name: str, role: str) -> Account:
    """The account of a user the identity provider vouched for, made or given `role`."""
    _check_role(role)
    with engine.begin() as connection:
        row = connection.execute(sa.select(users).where(users.c.name == name)).first()
        if row is None:
            connection.execute(
                users.insert().values(
                    name=name, role=role, password_hash=EXTERNAL_HASH, disabled=False,
                    created_at=utcnow(),
                )
            )  # fmt: skip
            return Account(name, role)
        if row.role != role:
            connection.execute(users.update().where(users.c.name == name).values(role=role))
    return Account(name, role, bool(row.disabled), row.password_hash)


def set_password_hash(engine: Engine, name: str, password_hash: str) -> None:
    """Store a re-computed hash (argon2 parameters raised since it was made)."""
    with engine.begin() as connection:
        connection.execute(
            users.update().where(users.c.name == name).values(password_hash=password_hash)
        )


def disable_user(engine: Engine, name: str) -> None:
    """Disable an account: its sessions end at their next request."""
    with engine.begin() as connection:
        done = connection.execute(
            users.update().where(users.c.name == name).values(disabled=True)
        ).rowcount
    if not done:
        raise AccountError(f"no user named {name!r}")


def add_token(engine: Engine, name: str, role: str, token_sha256: str) -> None:
    """A new API token (its hash only); refused if the name is taken or the role unknown."""
    _check_role(role)
    with engine.begin() as connection:
        taken = sa.select(api_tokens.c.name).where(api_tokens.c.name == name)
        if connection.execute(taken).first():
            raise AccountError(f"token {name!r} exists already")
        connection.execute(
            api_tokens.insert().values(
                name=name, role=role, token_sha256=token_sha256, created_at=utcnow()
            )
        )


def token(engine: Engine, token_sha256: str) -> Account | None:
    """The unrevoked token with this hash, or None."""
    query = sa.select(api_tokens).where(
        api_tokens.c.token_sha256 == token_sha256, api_tokens.c.revoked_at.is_(None)
    )
    with engine.begin() as connection:
        row = connection.execute(query).first()
    return None if row is None else Account(f"token:{row.name}", row.role)


def revoke_token(engine: Engine, name: str) -> None:
    with engine.begin() as connection:
        done = connection.execute(
            api_tokens.update()
            .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
    if not done:
        raise AccountError(f"no active token named {name!r}")
