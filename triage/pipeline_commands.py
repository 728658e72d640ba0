"""Pipeline commands: `triage enqueue`, `urgent`, `results`, `status`, `ack` and `db`.

Each opens the ledger through `_ledger()`, which checks once that the schema is current and
otherwise says to run `triage db upgrade` (the only command that migrates).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from schemas.messages import Priority

console = Console()
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the pipeline's commands to the `triage` app."""
    app.command("enqueue")(enqueue)
    app.command("urgent")(urgent)
    app.command("results")(results)
    app.command("status")(status)
    app.command("ack")(ack)
    app.add_typer(db_app, name="db")


def _ledger():  # noqa: ANN202 - sqlalchemy Engine (imported lazily)
    from ledger.database import SchemaOutdatedError, engine_for, require_schema
    from schemas.settings import get_settings

    engine = engine_for(get_settings().resolved_database_url)
    try:
        require_schema(engine)
    except SchemaOutdatedError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    return engine


def enqueue(
    paths: Annotated[list[Path], typer.Argument(help="Scan files or folders.")],
    priority: Annotated[
        Priority, typer.Option("--priority", help="`stat`: classified ahead of routine.")
    ] = Priority.routine,
    accession_from_filename: Annotated[
        bool, typer.Option("--accession-from-filename", help="Accession = the file name's stem.")
    ] = False,
) -> None:
    """Validate and queue scans (PNG, JPEG, NPY, NPZ, DICOM); one line per scan."""
    from gateway.client import PublishError, submit_scans

    _ledger()
    try:
        submission = submit_scans(paths, priority, accession_from_filename)
    except PublishError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    for scan_id, source in submission.queued:
        typer.echo(f"queued    {scan_id}  {source}")
    for error in submission.rejected:
        typer.echo(f"rejected  {error.source}: {error.reason}")
    typer.echo(
        f"{len(submission.queued)} scans queued ({submission.priority}) in {submission.jobs} "
        f"jobs, {len(submission.rejected)} inputs rejected"
    )
    if submission.rejected:
        raise typer.Exit(1)


def urgent(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    include_all: Annotated[bool, typer.Option("--all", help="Include reviewed cases.")] = False,
) -> None:
    """The urgent worklist, most urgent first (highest P(class 2), then longest waiting)."""
    from ledger import reads

    cases = reads.worklist(_ledger(), include_acknowledged=include_all)
    if as_json:
        _print_json(cases)
        return
    table = Table(title=f"Urgent worklist ({len(cases)} {'cases' if include_all else 'open'})")
    for column in ("scan id", "accession", "P(class 2)", "classified", "waited", "reviewed"):
        table.add_column(column)
    for case in cases:
        table.add_row(
            case["scan_id"],
            case["accession"] or "-",
            f"{case['p2']:.3f}",
            _short_time(case["classified_at"]),
            _duration(case["waited_s"]),
            _short_time(case["acknowledged_at"]) if case["acknowledged"] else "no",
        )
    console.print(table)


def results(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="ISO time (UTC if no zone) or an age like 30m, 2h, 1d."),
    ] = None,
) -> None:
    """One entry per classified scan, oldest first."""
    from ledger import reads

    rows = reads.list_results(_ledger(), since=parse_since(since) if since else None)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"Results ({len(rows)})")
    for column in ("scan id", "accession", "class", "P0", "P1", "P2", "urgent", "model", "at"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["scan_id"],
            row["accession"] or "-",
            str(row["predicted"]),
            *(f"{row[key]:.3f}" for key in ("p0", "p1", "p2")),
            "URGENT" if row["urgent"] else "",
            row["model_version"],
            _short_time(row["classified_at"]),
        )
    console.print(table)


def status(scan_id: Annotated[str, typer.Argument(help="The scan id `enqueue` printed.")]) -> None:
    """One scan's whole history: received, published, started, classified, escalated, reviewed."""
    from ledger import reads

    found = reads.history(_ledger(), scan_id)
    if found is None:
        typer.echo(f"error: no scan with id {scan_id!r}", err=True)
        raise typer.Exit(1)
    table = Table(title=f"Scan {scan_id}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key in (
        "status", "priority", "accession", "source", "received_at", "published_at",
        "started_at", "attempts", "classified_at", "predicted", "p2", "urgent",
        "model_version", "escalated_at", "notified_at", "acknowledged_at", "error",
    ):  # fmt: skip
        value = found[key]
        shown = _short_time(value) if isinstance(value, datetime) else value
        table.add_row(key, "-" if shown is None else str(shown))
    console.print(table)


def ack(scan_id: Annotated[str, typer.Argument(help="The urgent case's scan id.")]) -> None:
    """Mark an urgent case reviewed by a clinician."""
    from ledger import reads

    moment = reads.acknowledge(_ledger(), scan_id)
    if moment is None:
        typer.echo(f"error: scan {scan_id!r} is not on the urgent worklist", err=True)
        raise typer.Exit(1)
    typer.echo(f"acknowledged {scan_id} at {moment.isoformat(timespec='seconds')}")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    _migrate(revision, downgrade=False)


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")],
) -> None:
    """Revert migrations down to REVISION."""
    _migrate(revision, downgrade=True)


def _migrate(revision: str, downgrade: bool) -> None:
    from ledger.database import current_revisions, engine_for, migrate
    from schemas.settings import get_settings

    engine = engine_for(get_settings().resolved_database_url)
    migrate(engine, revision, downgrade=downgrade)
    shown = ", ".join(sorted(current_revisions(engine))) or "base (empty)"
    typer.echo(f"database {engine.url.render_as_string(hide_password=True)} at revision {shown}")


# -- formatting ----------------------------------------------------------------------------

AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> datetime:
    """An ISO time (UTC when it names no zone) or an age like `30m` before now."""
    age = AGE.match(text.strip())
    if age:
        return datetime.now(UTC) - timedelta(seconds=float(age[1]) * AGE_UNITS[age[2]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither an ISO time nor an age like 30m") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_json(rows: list[dict[str, Any]]) -> None:
    typer.echo(json.dumps(rows, default=_json_value, indent=2))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _short_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
