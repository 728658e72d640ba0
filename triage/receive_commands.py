"""DICOM network commands: `triage receive` (the C-STORE receiver) and `triage echo`."""

from __future__ import annotations

import gc
import signal
import threading
from typing import Annotated

import typer

from schemas.messages import Priority


def register(app: typer.Typer) -> None:
    """Add the DICOM network commands to the `triage` app."""
    app.command("receive")(receive)
    app.command("echo")(echo)


def receive(
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (TRIAGE_DICOM_PORT).")
    ] = None,
    ae_title: Annotated[
        str | None, typer.Option("--ae-title", help="Our AE title (TRIAGE_DICOM_AE_TITLE).")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "0.0.0.0",  # noqa: S104
    priority: Annotated[
        Priority, typer.Option("--priority", help="Priority of the studies received.")
    ] = Priority.routine,
    grace: Annotated[
        float, typer.Option("--grace", help="Seconds open associations get to finish on stop.")
    ] = 30.0,
) -> None:
    """Receive studies over DICOM (C-STORE, C-ECHO) until SIGTERM or Ctrl-C. Each instance is
    acknowledged once it is in the ledger; a study is queued TRIAGE_STUDY_IDLE_SECONDS after
    its last instance. Over DICOM TLS when TRIAGE_DICOM_TLS_CERT is set."""
    from gateway.intake.receiver import StoreContext, start_receiver
    from gateway.tls import TlsSettingsError
    from schemas.settings import get_settings
    from triage.pipeline_commands import _ledger

    settings = get_settings()
    updates = {"dicom_port": port, "dicom_ae_title": ae_title}
    settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    _ledger()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    context = StoreContext(settings, priority)
    try:
        receiver = start_receiver(settings, host=host, context=context)
    except TlsSettingsError as error:
        typer.echo(f"receive: {error}", err=True)
        raise typer.Exit(2) from None
    over = " over TLS" if settings.dicom_tls_cert else ""
    typer.echo(f"receiving as {settings.dicom_ae_title} on port {receiver.port}{over}", err=True)
    while not stop.wait(0.5):
        pass
    aborted = receiver.stop(grace)
    typer.echo(f"stopped ({aborted} associations aborted after the grace period)", err=True)
    gc.freeze()  # exit within the grace: the final collections over this heap are slow


def echo(
    host: Annotated[str, typer.Option("--host", help="The receiver's address.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option("--port", help="Its port.")] = None,
    ae_title: Annotated[str | None, typer.Option("--ae-title", help="Its AE title.")] = None,
    calling: Annotated[
        str | None,
        typer.Option("--calling-aet", help="Our AE title; default the first allowed one."),
    ] = None,
) -> None:
    """C-ECHO a DICOM receiver (a health check); exit 1 unless it answers success. With
    TRIAGE_DICOM_TLS_CERT set, over TLS, presenting that certificate (see README)."""
    from pynetdicom import AE

    from gateway.intake.receiver import VERIFICATION, quiet_pynetdicom
    from gateway.tls import health_check_tls
    from schemas.settings import get_settings

    settings = get_settings()
    quiet_pynetdicom()
    calling = calling or (settings.dicom_allowed_aes or ["TRIAGE-ECHO"])[0]
    ae = AE(ae_title=calling)
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    tls = health_check_tls(settings)
    association = ae.associate(
        host,
        port or settings.dicom_port,
        ae_title=ae_title or settings.dicom_ae_title,
        tls_args=None if tls is None else (tls.context, host),
    )
    if not association.is_established:
        typer.echo("echo: association refused or no answer", err=True)
        raise typer.Exit(1)
    status = association.send_c_echo()
    association.release()
    if not status or status.Status != 0x0000:
        typer.echo("echo: no success status", err=True)
        raise typer.Exit(1)
    typer.echo("echo: success")
