"""Web commands: `triage web`, `users add|list|disable`, `tokens create|revoke`, `audit`."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from triage.pipeline_commands import JsonOption, SinceOption, _json_value, _ledger, parse_since

console = Console()
users_app = typer.Typer(help="Built-in accounts of the web page.", no_args_is_help=True)
tokens_app = typer.Typer(
    help="API tokens for systems (Authorization: Bearer).", no_args_is_help=True
)
RoleOption = Annotated[str, typer.Option("--role", help="clinician, operator or admin.")]


def register(app: typer.Typer) -> None:
    """Add the web edge's commands to the `triage` app."""
    app.command("web")(web)
    app.command("audit")(audit)
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")


def web(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
) -> None:
    """Serve the worklist, study pages, operations, performance and the JSON API."""
    import uvicorn

    from schemas.settings import get_settings
    from web.app import UnsafeWebSettings, create_app

    settings = get_settings()
    _ledger()
    try:
        app = create_app(settings)
    except UnsafeWebSettings as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"triage web on http://{host}:{port}/ (log in at /login)")
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.web_trusted_proxies,
        log_level="warning",
        access_log=False,  # paths carry study uids: no patient data in logs
    )


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user name to log in with.")],
    role: RoleOption = "clinician",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Add an account; without --password-stdin a password is generated and printed once."""
    from ledger.accounts import AccountError, add_user
    from web.passwords import generate_password, hash_password

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else generate_password()
    try:
        add_user(_ledger(), name, role, hash_password(password))
    except (AccountError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"added {name} ({role})")
    if not password_stdin:
        typer.echo(f"password (shown once): {password}")


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """Every account with its role and whether it is disabled."""
    from ledger.accounts import list_users

    found = list_users(_ledger())
    if as_json:
        typer.echo(
            json.dumps([{"name": u.name, "role": u.role, "disabled": u.disabled} for u in found])
        )
        return
    table = Table("user", "role", "disabled")
    for account in found:
        table.add_row(account.name, account.role, "yes" if account.disabled else "no")
    console.print(table)


@users_app.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="The user name.")]) -> None:
    """Disable an account: its open sessions end at their next request."""
    from ledger.accounts import AccountError, disable_user

    try:
        disable_user(_ledger(), name)
    except AccountError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"disabled {name}")


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="Which system the token is for.")],
    role: RoleOption = "operator",
) -> None:
    """Create an API token; it is printed once and only its hash is kept."""
    from ledger.accounts import AccountError, add_token
    from web.passwords import generate_token, token_digest

    token = generate_token()
    try:
        add_token(_ledger(), name, role, token_digest(token))
    except AccountError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"token for {name} ({role}), shown once:\n{token}")


@tokens_app.command("revoke")
def tokens_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke an API token at once."""
    from ledger.accounts import AccountError, revoke_token

    try:
        revoke_token(_ledger(), name)
    except AccountError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {name}")


def audit(
    as_json: JsonOption = False,
    since: SinceOption = None,
    study: Annotated[
        str | None, typer.Option("--study", help="A study uid, accession, study or scan id.")
    ] = None,
) -> None:
    """The audit trail: logins, views of studies, acknowledgements, findings, retries."""
    from ledger import audit as audit_trail

    rows = audit_trail.events(_ledger(), parse_since(since) if since else None, study)
    if as_json:
        typer.echo(json.dumps(rows, default=_json_value, indent=2))
        return
    table = Table("when", "who", "action", "study", "from", "detail")
    for row in rows:
        table.add_row(
            row["at"].strftime("%Y-%m-%d %H:%M:%S"), row["who"], row["action"],
            row["study_uid"] or "", row["address"] or "", row["detail"] or "",
        )  # fmt: skip
    console.print(table)
