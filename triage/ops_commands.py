"""Operations commands: `triage stats` (what waits where), `triage metrics` (the same for
Prometheus), `triage reconcile` (re-send what the ledger says is stuck or overdue) and
`triage demo` (the whole flow)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from trainer.phantom_model import TRAIN_SCANS

if TYPE_CHECKING:
    from schemas.settings import Settings


def register(app: typer.Typer) -> None:
    """Add the operations commands to the `triage` app."""
    app.command("stats")(stats)
    app.command("metrics")(metrics)
    app.command("reconcile")(reconcile)
    app.command("demo")(demo)


def demo(
    scans: Annotated[
        int, typer.Option("--scans", min=1, help="Held-out phantoms to enqueue.")
    ] = 200,
    train_scans: Annotated[
        int, typer.Option("--train-scans", min=30, help="Phantoms to train on.")
    ] = TRAIN_SCANS,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="Epochs per network (default: each candidate's own)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train again instead of reusing the demo model.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, help="Seconds to wait for workers, results, the web."),
    ] = 300.0,
    no_web: Annotated[
        bool,
        typer.Option("--no-web", help="Exit after the summary instead of serving the web page."),
    ] = False,
    web_port: Annotated[
        int | None,
        typer.Option(
            "--web-port", min=1, max=65535, help="The web page's port (default 8080 if free)."
        ),
    ] = None,
) -> None:
    """The whole flow on SYNTHETIC phantoms: train, start workers, enqueue, show the worklist,
    then serve the web page with a one-time login until Ctrl-C (unless --no-web)."""
    import signal

    from schemas.settings import get_settings
    from triage.demo import DemoError, DemoOptions, run_demo

    def stop_on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through run_demo's cleanup

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    options = DemoOptions(
        scans, train_scans, epochs, seed, retrain, timeout, web=not no_web, web_port=web_port
    )
    try:
        run_demo(get_settings(), options, Console())
    except DemoError as error:
        Console(stderr=True).print(f"[red]demo failed:[/red] {error}")
        raise typer.Exit(1) from None


def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Queue depths and the age of the oldest waiting scan per queue, and open urgent cases."""
    from gateway.operations.monitor import take_snapshot
    from schemas.settings import get_settings

    settings = get_settings()
    try:
        snapshot = take_snapshot(settings)
        retention = retention_stats(settings, snapshot.taken_at)
    except RuntimeError as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({**snapshot.as_dict(), "retention": retention}, indent=2))
        return
    table = Table(title="Queues")
    table.add_column("queue")
    table.add_column("jobs in broker", justify="right")
    table.add_column("scans waiting", justify="right")
    table.add_column("oldest waiting", justify="right")
    for queue in snapshot.queues:
        table.add_row(
            queue.name,
            str(queue.broker_depth),
            str(queue.waiting),
            format_age(queue.oldest_waiting_seconds),
        )
    console = Console()
    console.print(table)
    console.print(
        f"processing: {snapshot.processing}   failed: {snapshot.failed}   "
        f"open urgent cases: [bold]{snapshot.open_urgent_cases}[/bold]"
    )
    waiting = ", ".join(f"{name} {count}" for name, count in snapshot.deliveries_waiting.items())
    console.print(f"deliveries waiting: {waiting}")
    console.print(f"instances refused (patient contradicts study): {snapshot.contradicting}")
    console.print(
        f"pixels held: {retention['pixels_held']} scans (oldest received "
        f"{format_age(retention['oldest_pixels_age_seconds'])} ago)   purged so far: "
        f"{retention['purged']['pixels']} pixel rows, {retention['purged']['studies']} studies"
        f"   last retention pass: {format_age(retention['last_pass_age_seconds'])} ago"
    )


def retention_stats(settings: Settings, now: datetime) -> dict[str, object]:
    """Pixels the ledger holds now (one read over them) and the broker's retention record."""
    import sqlalchemy as sa

    from gateway.broker.server import broker_url, redis_client
    from gateway.operations.retention_report import read_state
    from ledger.database import engine_for
    from ledger.retention import holdings

    try:
        held = holdings(engine_for(settings.resolved_database_url))
    except sa.exc.SQLAlchemyError as error:
        raise RuntimeError(f"cannot read the ledger's pixels ({type(error).__name__})") from None
    state = read_state(redis_client(broker_url(settings)))

    def age(moment: datetime | None) -> float | None:
        return None if moment is None else max(0.0, (now - moment).total_seconds())

    return {
        "keep_pixels_days": settings.keep_pixels_days,
        "keep_results_days": settings.keep_results_days,
        "pixels_held": held.pixels,
        "oldest_pixels_age_seconds": age(held.oldest_received_at),
        "purged": state.purged,
        "last_pass_age_seconds": age(state.last_pass_at),
    }


def metrics(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to serve /metrics on.")
    ] = 9108,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (0.0.0.0: every interface).")
    ] = "127.0.0.1",
) -> None:
    """Serve Prometheus metrics at /metrics; each scrape reads the broker and the ledger."""
    import signal

    from gateway.operations.metrics import start_metrics_server
    from schemas.settings import get_settings

    def stop_on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        server, thread = start_metrics_server(get_settings(), host, port)
    except OSError as error:
        Console(stderr=True).print(f"[red]error:[/red] cannot listen on {host}:{port}: {error}")
        raise typer.Exit(2) from None
    typer.echo(f"serving metrics on http://{host}:{server.server_port}/metrics")
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


def reconcile(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON counts.")] = False,
) -> None:
    """Re-publish stuck scans, move overdue routine scans ahead, fail poison scans (once)."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from gateway.broker.publish import PublishError
    from ledger.database import SchemaOutdatedError, engine_for, require_schema
    from schemas.errors import describe
    from schemas.settings import get_settings
    from worker.reconcile import run_reconcile

    settings = get_settings()
    try:
        require_schema(engine_for(settings.resolved_database_url))
    except SchemaOutdatedError as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    try:
        report = run_reconcile(settings)
    except (PublishError, RedisError, OperationalError) as error:
        Console(stderr=True).print(f"[red]error:[/red] broker: {describe(error)}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    typer.echo(
        f"re-published {report.republished} stuck scans, moved {report.moved_ahead} overdue "
        f"routine scans ahead, marked {report.failed} failed, re-sent {report.escalations} "
        "escalations"
    )


def format_age(seconds: float | None) -> str:
    """12.3 -> '12s', 754 -> '12m 34s', 7300 -> '2h 01m'; None -> '-'."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
