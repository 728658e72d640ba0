"""`triage orders --check` and the order column of `triage studies`."""

from __future__ import annotations

import json
import socket

from typer.testing import CliRunner

from gateway.intake.client import submit_images
from ledger import orders
from ledger.database import engine_for
from schemas.settings import get_settings
from tests.fixtures_model import brightness_scans
from tests.ledger.test_orders import order
from triage.cli import app

runner = CliRunner()


def test_the_check_says_whether_a_listener_accepts() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        accepted = runner.invoke(app, ["orders", "--check", "--port", str(port)])
    refused = runner.invoke(app, ["orders", "--check", "--port", str(port)])
    assert accepted.exit_code == 0 and "accepting" in accepted.output
    assert refused.exit_code == 1 and "nothing accepts" in refused.output


def test_studies_shows_why_a_study_was_stopped(redis_server: str, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("TRIAGE_REDIS_URL", redis_server)
    get_settings.cache_clear()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    engine = engine_for(get_settings().resolved_database_url)
    orders.record_message(engine, "M1", "ORM^O01", [order("ACC-GONE", control="CA")])
    submission = submit_images(brightness_scans([200, 200]), accessions=["ACC-GONE", "ACC-ON"])
    assert submission.jobs == 1  # the cancelled one is never published
    listed = runner.invoke(app, ["studies", "--json"])
    assert listed.exit_code == 0
    rows = {row["accession"]: row for row in json.loads(listed.output)}
    assert (rows["ACC-GONE"]["status"], rows["ACC-GONE"]["order_note"]) == (
        "failed",
        "order cancelled",
    )
    assert rows["ACC-ON"]["order_note"] is None and rows["ACC-ON"]["order_control"] is None
    shown = runner.invoke(app, ["studies"])
    last_column = [line.split("│")[-2].strip() for line in shown.output.splitlines() if "│" in line]
    assert shown.exit_code == 0 and "".join(last_column).count("ordercancelled") == 1
