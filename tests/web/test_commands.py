"""`triage users`, `tokens`, `ack --user` and `audit`: the CLI writes through the same ledger code."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ledger import accounts, reads
from tests.web.ledger_rows import decided_study
from triage.cli import app
from web.passwords import token_digest, verify_password

runner = CliRunner()


def test_users_are_added_with_argon2id_listed_and_disabled(engine) -> None:  # noqa: ANN001
    added = runner.invoke(
        app,
        ["users", "add", "bob", "--role", "operator", "--password-stdin"],
        input="a long enough password\n",
    )
    assert added.exit_code == 0, added.output
    bob = accounts.user(engine, "bob")
    assert bob.role == "operator" and bob.password_hash.startswith("$argon2id$")
    assert verify_password(bob.password_hash, "a long enough password")
    generated = runner.invoke(app, ["users", "add", "carol"])
    password = generated.output.split("password (shown once): ")[1].strip()
    assert verify_password(accounts.user(engine, "carol").password_hash, password)
    refused = runner.invoke(app, ["users", "add", "dave", "--role", "superuser"])
    assert refused.exit_code == 1 and "role 'superuser' is unknown" in refused.output
    assert runner.invoke(app, ["users", "disable", "bob"]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["users", "list", "--json"]).output)
    assert {"name": "bob", "role": "operator", "disabled": True} in listed


def test_a_token_is_printed_once_and_stored_as_its_hash(engine) -> None:  # noqa: ANN001
    created = runner.invoke(app, ["tokens", "create", "ris", "--role", "operator"])
    token = created.output.strip().splitlines()[-1]
    assert (
        token.startswith("trg_") and accounts.token(engine, token_digest(token)).role == "operator"
    )
    assert runner.invoke(app, ["tokens", "revoke", "ris"]).exit_code == 0
    assert accounts.token(engine, token_digest(token)) is None


def test_ack_records_the_user_and_audit_lists_it(engine) -> None:  # noqa: ANN001
    decided_study(engine, "1.2.3.9001", [0.9])
    acked = runner.invoke(app, ["ack", "1.2.3.9001", "--user", "dr-who"])
    assert acked.exit_code == 0, acked.output
    (case,) = reads.worklist(engine, acknowledged_only=True)
    assert case["acknowledged_by"] == "dr-who"
    rows = json.loads(runner.invoke(app, ["audit", "--json", "--study", "ACC-9001"]).output)
    assert [(row["who"], row["action"], row["study_uid"]) for row in rows] == [
        ("dr-who", "acknowledge", "1.2.3.9001")
    ]
    assert json.loads(runner.invoke(app, ["audit", "--json", "--since", "1m"]).output) == rows
