"""Payloads that travel through Redis: scan ids and scores, never pixels or patient data.

Tasks take and return these as plain JSON dicts (`model_dump(mode="json")`), since Celery is
configured for JSON only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Priority(StrEnum):
    """How soon a scan is classified: `stat` jobs are served ahead of the routine backlog."""

    routine = "routine"
    stat = "stat"


def check_priority(priority: str) -> Priority:
    """The Priority named by `priority`, or a ValueError that lists the known ones."""
    try:
        return Priority(priority)
    except ValueError:
        known = " or ".join(item.value for item in Priority)
        raise ValueError(f"unknown priority {priority!r}: use {known}") from None


class ClassifyJob(BaseModel):
    """A batch of scans for one forward pass; pixels are read from the database."""

    scan_ids: list[str] = Field(min_length=1)
    priority: Priority = Priority.routine


class Escalation(BaseModel):
    """An urgent study, sent to the `urgent` queue for the worklist: the study's id and its
    most suspicious slice (`scan_id`), the study's P(class 2) and the model that decided."""

    scan_id: str
    study_id: str | None = None  # None: an escalation queued before studies existed
    p2: float = Field(ge=0, le=1)
    model_version: str
    classified_at: datetime
