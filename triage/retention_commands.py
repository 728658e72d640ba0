"""`triage purge`: one retention pass now (or, with --dry-run, what it would remove).

Counts only: no ids, no patient data. The beat runs the same pass in bounded runs
(`worker/retention.py`); this one goes to the end.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add the retention command to the `triage` app."""
    app.command("purge")(purge)


def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON counts.")] = False,
) -> None:
    """Remove pixels (and, with TRIAGE_KEEP_RESULTS_DAYS, whole studies) past their keep."""
    from redis.exceptions import RedisError

    from gateway.broker.server import broker_url, redis_client
    from gateway.operations.retention_report import record_pass
    from ledger import retention
    from ledger.database import SchemaOutdatedError, engine_for, require_schema
    from schemas.errors import describe
    from schemas.settings import get_settings
    from schemas.tables import utcnow

    settings = get_settings()
    engine = engine_for(settings.resolved_database_url)
    try:
        require_schema(engine)
    except SchemaOutdatedError as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    now = utcnow()
    report = retention.purge(
        engine, settings.keep_pixels_days, settings.keep_results_days, now=now, dry_run=dry_run
    )
    if not dry_run:
        try:
            record_pass(redis_client(broker_url(settings)), report, now)
        except (RedisError, OSError, RuntimeError) as error:
            Console(stderr=True).print(
                f"[yellow]warning:[/yellow] purged, but the broker's retention record was not "
                f"updated: {describe(error)}"
            )
    counts = {
        "keep_pixels_days": settings.keep_pixels_days,
        "keep_results_days": settings.keep_results_days,
        **report.as_dict(),
    }
    if as_json:
        typer.echo(json.dumps(counts))
        return
    _print(counts, dry_run)


def _print(counts: dict[str, object], dry_run: bool) -> None:
    table = Table(title="Retention (dry run: nothing removed)" if dry_run else "Retention")
    table.add_column("")
    table.add_column("would go" if dry_run else "removed", justify="right")
    table.add_row("pixel rows", str(counts["pixels"]))
    table.add_row("key images (saliency maps)", str(counts["key_images"]))
    table.add_row("scans with their results", str(counts["scans"]))
    table.add_row("studies", str(counts["studies"]))
    console = Console()
    console.print(table)
    results_days = counts["keep_results_days"]
    console.print(
        f"pixels kept {counts['keep_pixels_days']:g} days after the decision; results kept "
        + ("forever" if results_days is None else f"{results_days:g} days")
    )
    if not dry_run:
        console.print(f"scans still holding pixels: {counts['pixels_held']}")
