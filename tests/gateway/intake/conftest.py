"""What the intake tests share: a publisher that records its calls, and migrated settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from ledger.database import engine_for, upgrade_schema
from schemas.messages import Priority
from schemas.settings import Settings


@dataclass
class Published:
    calls: list[tuple[list[str], Priority]] = field(default_factory=list)

    def __call__(self, scan_ids: Sequence[str], priority: Priority, _settings: Settings) -> int:
        self.calls.append((list(scan_ids), priority))
        return 1


@pytest.fixture
def settings(triage_env: object) -> Settings:
    settings = Settings()
    upgrade_schema(engine_for(settings.resolved_database_url))
    return settings
