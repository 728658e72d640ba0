"""Payloads that travel through Redis: scan ids and scores, never pixels or patient data.

Tasks take and return these as plain JSON dicts (`model_dump(mode="json")`), since Celery is
configured for JSON only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Priority = Literal["routine", "stat"]


class ClassifyJob(BaseModel):
    """A batch of scans for one forward pass; pixels are read from the database."""

    scan_ids: list[str] = Field(min_length=1)
    priority: Priority = "routine"


class Escalation(BaseModel):
    """A class-2 result, sent to the `urgent` queue for the worklist."""

    scan_id: str
    p2: float = Field(ge=0, le=1)
    model_version: str
    classified_at: datetime
