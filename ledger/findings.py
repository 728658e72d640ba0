"""Readers' findings on a study: urgent confirmed or not, their class, a short comment.

A correction is a new row; the newest row of a study is its current finding, the older ones
its history. Each finding is written with its audit row in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger import audit
from ledger.reads import fetch_rows, studies_named
from ledger.statements import findings
from schemas.tables import utcnow

MAX_COMMENT = 2000  # characters


class FindingError(ValueError):
    """A finding that cannot be stored as given (the message names the field)."""


@dataclass(frozen=True)
class NewFinding:
    urgent: bool
    finding_class: int
    comment: str | None = None

    def checked(self) -> NewFinding:
        if self.finding_class not in (0, 1, 2):
            raise FindingError(f"class {self.finding_class!r} must be 0, 1 or 2")
        comment = (self.comment or "").strip() or None
        if comment is not None and len(comment) > MAX_COMMENT:
            raise FindingError(f"comment is longer than {MAX_COMMENT} characters")
        return NewFinding(bool(self.urgent), self.finding_class, comment)


def add_finding(
    engine: Engine, key: str, who: str, finding: NewFinding, address: str | None = None
) -> str | None:
    """Store `who`'s finding on the study `key` names, with its audit row; returns the
    study's id, or None when `key` names no study."""
    finding = finding.checked()
    with engine.begin() as connection:
        named = studies_named(connection, key)
        if not named:
            return None
        study_id = named[0]
        connection.execute(
            findings.insert().values(
                study_id=study_id,
                who=who,
                at=utcnow(),
                urgent=finding.urgent,
                finding_class=finding.finding_class,
                comment=finding.comment,
            )
        )
        detail = f"urgent={finding.urgent} class={finding.finding_class}"
        audit.record(connection, who, "finding", study_id, address, detail)
    return study_id


def history(engine: Engine, study_id: str) -> list[dict[str, Any]]:
    """A study's findings, newest (the current one) first."""
    query = (
        sa.select(findings)
        .where(findings.c.study_id == study_id)
        .order_by(findings.c.at.desc(), findings.c.id.desc())
    )
    return fetch_rows(engine, query)


def current_findings() -> sa.Subquery:
    """The newest finding of each study (study_id, urgent, finding_class, at)."""
    ranked = sa.select(
        findings.c.study_id,
        findings.c.urgent,
        findings.c.finding_class,
        findings.c.at,
        sa.func.row_number()
        .over(
            partition_by=findings.c.study_id, order_by=(findings.c.at.desc(), findings.c.id.desc())
        )
        .label("rank"),
    ).subquery()
    return (
        sa.select(ranked.c.study_id, ranked.c.urgent, ranked.c.finding_class, ranked.c.at)
        .where(ranked.c.rank == 1)
        .subquery()
    )
