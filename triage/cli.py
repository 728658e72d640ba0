"""`triage`: one typer app. Each command module registers its commands here.

- triage/train_commands.py     train, estimate, predict, evaluate, synth     (trainer/)
- triage/pipeline_commands.py  enqueue, urgent, studies, deliveries, results,
                               status, ack, db                               (gateway/, ledger/)
- triage/ops_commands.py       stats, metrics, reconcile, demo               (gateway/, worker/)
- triage/receive_commands.py   receive, echo (DICOM network)                 (gateway/)
- triage/order_commands.py     orders (the RIS's HL7 order feed)             (gateway/)
- triage/retention_commands.py purge (retention)                             (ledger/)
- triage/web_commands.py       web, users, tokens, audit                     (web/)

Command modules import the heavy packages (TensorFlow, Celery) inside each command, so
`triage --help` stays fast.
"""

from __future__ import annotations

import importlib
import logging

import typer

app = typer.Typer(
    name="triage",
    help="Batch triage of lung scans: train a model, classify scans through Celery workers, "
    "and put urgent (class 2) cases in front of a clinician first.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

COMMAND_MODULES = (
    "triage.train_commands",
    "triage.pipeline_commands",
    "triage.ops_commands",
    "triage.receive_commands",
    "triage.order_commands",
    "triage.retention_commands",
    "triage.web_commands",
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log for operators.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)
