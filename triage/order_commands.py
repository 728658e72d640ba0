"""The RIS's order feed: `triage orders` (an HL7 MLLP listener for ORM^O01 and OMI^O23)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the order feed's command to the `triage` app."""
    app.command("orders")(orders)


def orders(
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (TRIAGE_HL7_ORDERS_PORT).")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "0.0.0.0",  # noqa: S104
    check: Annotated[
        bool,
        typer.Option("--check", help="Only check that a listener accepts on --port (127.0.0.1)."),
    ] = False,
) -> None:
    """Receive the RIS's orders over HL7 MLLP until SIGTERM or Ctrl-C: every message is
    answered AA (stored, or a repeat), AE (not stored now: send again) or AR (malformed). A
    STAT order puts its study on the stat queue; a cancelled one stops it."""
    from gateway.intake.orders import OrderIntake, start_listener
    from schemas.settings import get_settings
    from triage.pipeline_commands import _ledger

    settings = get_settings()
    port = port if port is not None else settings.hl7_orders_port
    if check:
        _check(port)
        return
    engine = _ledger()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    listener = start_listener(OrderIntake(engine, settings), host, port)
    typer.echo(f"receiving orders (HL7 MLLP) on port {listener.port}", err=True)
    while not stop.wait(0.5):
        pass
    listener.stop()
    counts = listener.counts
    typer.echo(f"stopped: {counts.AA} AA, {counts.AE} AE, {counts.AR} AR", err=True)


def _check(port: int) -> None:
    """A health check: exit 1 unless a listener on this host accepts a connection."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    except OSError as error:
        typer.echo(f"orders: nothing accepts on port {port} ({type(error).__name__})", err=True)
        raise typer.Exit(1) from None
    typer.echo("orders: accepting")
