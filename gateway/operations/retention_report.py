"""Retention's record, kept where every process can read it: one small hash on the broker.

Each real pass (the beat's task, `triage purge`) is added here; `triage stats` and every
metrics scrape read it in one round trip instead of counting pixel rows in the ledger. The
purged totals only grow (Prometheus counters). A bounded pass walks part of the pixel rows
and says where the next one resumes; what the walk's parts hold is summed until the walk
reaches the last row, and then becomes `pixels_held` and `oldest_pixels_at`. Counts, times
and the walk's position (one of our scan ids) only: no patient data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from ledger.retention import PurgeReport

KEY = "triage:retention"
TOTALS = ("pixels", "key_images", "scans", "studies")  # purged so far, per kind


@dataclass(frozen=True)
class RetentionState:
    """What retention has done so far and what its last whole walk left."""

    purged: dict[str, int]
    last_pass_at: datetime | None
    pixels_held: int | None
    oldest_pixels_at: datetime | None
    resume_after: str  # where the next pass resumes the pixel walk ("" = from the start)

    def as_dict(self) -> dict[str, object]:
        """For `triage stats --json` (the walk's position left out)."""
        return {
            "purged": self.purged,
            "last_pass_at": self.last_pass_at and self.last_pass_at.isoformat(),
            "pixels_held": self.pixels_held,
            "oldest_pixels_at": self.oldest_pixels_at and self.oldest_pixels_at.isoformat(),
        }


def record_pass(client: redis.Redis, report: PurgeReport, at: datetime) -> None:
    """Add a real pass to the record (one WATCHed transaction, so two writers never mix)."""
    if report.dry_run:
        raise ValueError("a dry run removed nothing: it is not recorded")

    def update(pipe: redis.client.Pipeline) -> None:
        raw = _decoded(pipe.hgetall(KEY))
        walk = (0, None) if not report.walked_from else _walk_so_far(raw)
        held = walk[0] + (report.pixels_held or 0)
        moments = [m for m in (walk[1], _stamp(report.oldest_pixels_at)) if m is not None]
        oldest = min(moments) if moments else None
        pipe.multi()
        for kind in TOTALS:
            pipe.hincrby(KEY, f"purged_{kind}", getattr(report, kind))
        pipe.hset(KEY, "last_pass_at", at.timestamp())
        if report.resume_after is None:  # the walk reached the last row: a whole count
            pipe.hset(KEY, mapping={"pixels_held": held, "oldest_pixels_at": oldest or ""})
        pipe.hset(
            KEY,
            mapping={
                "resume_after": report.resume_after or "",
                "walk_held": 0 if report.resume_after is None else held,
                "walk_oldest": "" if report.resume_after is None else oldest or "",
            },
        )

    client.transaction(update, KEY)


def read_state(client: redis.Redis) -> RetentionState:
    """The totals and the last whole walk (zeros and Nones before any pass)."""
    raw = _decoded(client.hgetall(KEY))
    held = raw.get("pixels_held")
    return RetentionState(
        purged={kind: int(raw.get(f"purged_{kind}", 0)) for kind in TOTALS},
        last_pass_at=_moment(raw.get("last_pass_at")),
        pixels_held=None if held is None else int(held),
        oldest_pixels_at=_moment(raw.get("oldest_pixels_at")),
        resume_after=raw.get("resume_after", ""),
    )


def _decoded(raw: dict) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in raw.items()}


def _walk_so_far(raw: dict[str, str]) -> tuple[int, float | None]:
    oldest = raw.get("walk_oldest")
    return int(raw.get("walk_held", 0)), float(oldest) if oldest else None


def _stamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _moment(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None
