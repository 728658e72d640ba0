"""Pipeline commands: `triage enqueue`, `urgent`, `studies`, `deliveries`, `results`, `status`,
`ack` and `db`.

Each opens the ledger through `_ledger()`, which checks once that the schema is current and
otherwise says to run `triage db upgrade` (the only command that migrates).
"""

from __future__ import annotations

import getpass
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
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON list.")]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="ISO time (UTC if no zone) or an age like 30m, 2h, 1d."),
]
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the pipeline's commands to the `triage` app."""
    app.command("enqueue")(enqueue)
    app.command("urgent")(urgent)
    app.command("studies")(studies)
    app.command("deliveries")(deliveries)
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
    study: Annotated[
        str | None,
        typer.Option("--study", help="One study (exam) for every non-DICOM scan of this call."),
    ] = None,
) -> None:
    """Validate and queue scans (PNG, JPEG, NPY, NPZ, DICOM); one line per scan. DICOM files
    join the study their StudyInstanceUID names; each other scan is a study of its own unless
    --study names one. Studies close when the call ends."""
    from gateway.intake.client import PublishError, submit_scans

    _ledger()
    try:
        submission = submit_scans(paths, priority, accession_from_filename, study=study)
    except PublishError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    for scan_id, source in submission.queued:
        typer.echo(f"queued    {scan_id}  {source}")
    for scan_id, source in submission.repeated:
        typer.echo(f"queued    {scan_id}  {source} (already received)")
    for error in submission.rejected:
        typer.echo(f"rejected  {error.source}: {error.reason}")
    typer.echo(
        f"{len(submission.queued)} scans queued ({submission.priority}) in {submission.jobs} "
        f"jobs, {len(submission.rejected)} inputs rejected"
    )
    if submission.rejected:
        raise typer.Exit(1)


def urgent(
    as_json: JsonOption = False,
    include_all: Annotated[bool, typer.Option("--all", help="Include reviewed studies.")] = False,
) -> None:
    """The urgent worklist by exam, most urgent first (highest study P(class 2), then longest
    waiting); `scan id` is the study's most suspicious slice."""
    from ledger import reads

    cases = reads.worklist(_ledger(), include_acknowledged=include_all)
    if as_json:
        _print_json(cases)
        return
    title = f"Urgent worklist by exam ({len(cases)} {'studies' if include_all else 'open'})"
    table = Table(title=title)
    for column in (
        "study", "accession", "P(class 2)", "slices", "most suspicious slice", "classified",
        "waited", "reviewed",
    ):  # fmt: skip
        table.add_column(column)
    for case in cases:
        table.add_row(
            case["study_uid"],
            case["accession"] or "-",
            f"{case['p2']:.3f}",
            str(case["slices"]),
            case["scan_id"],
            _short_time(case["classified_at"]),
            _duration(case["waited_s"]),
            _short_time(case["acknowledged_at"]) if case["acknowledged"] else "no",
        )
    console.print(table)


def studies(
    as_json: JsonOption = False,
    since: SinceOption = None,
) -> None:
    """Every study with its decision (P(2), urgent, class: empty until every slice is done)
    and its order from the RIS (NW, XO, or why it was cancelled; `-` without one)."""
    from ledger import reads

    rows = reads.list_studies(_ledger(), since=parse_since(since) if since else None)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"Studies ({len(rows)})")
    for column in (
        "study", "accession", "status", "slices", "P2", "urgent", "class", "model",
    ):  # fmt: skip
        table.add_column(column)
    table.add_column("order", overflow="fold")  # a cancel reason is wrapped, never cut
    for row in rows:
        decided = row["p2"] is not None
        table.add_row(
            row["study_uid"],
            row["accession"] or "-",
            row["status"],
            str(row["slices"]),
            f"{row['p2']:.3f}" if decided else "-",
            ("URGENT" if row["urgent"] else "no") if decided else "-",
            str(row["predicted"]) if decided else "-",
            row["model_version"] or "-",
            row["order_note"] or row["order_control"] or "-",
        )
    console.print(table)


def deliveries(
    as_json: JsonOption = False,
) -> None:
    """The outbox: every message about a study decision (PACS, RIS, FHIR, webhook), newest
    first."""
    from ledger import deliveries as outbox

    rows = outbox.list_deliveries(_ledger())
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"Deliveries ({len(rows)})")
    for column in ("study", "decision", "channel", "status", "attempts", "next / done", "error"):
        table.add_column(column)
    for row in rows:
        when = row["delivered_at"] if row["status"] == "delivered" else row["next_attempt_at"]
        table.add_row(
            row["study_uid"],
            str(row["decision"]),
            row["channel"],
            row["status"],
            str(row["attempts"]),
            _short_time(when),
            (row["last_error"] or "")[:60],
        )
    console.print(table)


def results(
    as_json: JsonOption = False,
    since: SinceOption = None,
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
        "model_version", "study_status", "study_p2", "study_urgent", "escalated_at",
        "notified_at", "acknowledged_at", "error",
    ):  # fmt: skip
        value = found[key]
        shown = _short_time(value) if isinstance(value, datetime) else value
        table.add_row(key, "-" if shown is None else str(shown))
    console.print(table)


def ack(
    key: Annotated[
        str, typer.Argument(help="The urgent study: its study uid, accession, or a scan id.")
    ],
    user: Annotated[
        str | None, typer.Option("--user", help="Who reviewed it (default: the OS user).")
    ] = None,
) -> None:
    """Mark an urgent study reviewed by a clinician (recorded with who, in the audit trail)."""
    from ledger import worklist

    moment = worklist.acknowledge(_ledger(), key, user or os_user())
    if moment is None:
        typer.echo(f"error: {key!r} names no study on the urgent worklist", err=True)
        raise typer.Exit(1)
    typer.echo(f"acknowledged {key} at {moment.isoformat(timespec='seconds')}")


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


def os_user() -> str:
    """Who runs this command, for `triage ack` without --user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


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
