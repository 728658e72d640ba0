"""The one place that maps roles to what they may do (the README's permission table)."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    view_worklist = "view_worklist"
    view_study = "view_study"
    acknowledge = "acknowledge"
    record_finding = "record_finding"
    view_performance = "view_performance"
    view_operations = "view_operations"
    retry_delivery = "retry_delivery"
    view_audit = "view_audit"
    store_studies = "store_studies"  # STOW-RS in (a PACS's machine account)


READ = {Action.view_worklist, Action.view_study, Action.view_performance}
PERMISSIONS: dict[str, frozenset[Action]] = {
    "clinician": frozenset(READ | {Action.acknowledge, Action.record_finding}),
    "operator": frozenset(
        READ | {Action.view_operations, Action.retry_delivery, Action.store_studies}
    ),
    "admin": frozenset(Action),
}


def allowed(role: str, action: Action) -> bool:
    """Whether `role` may do `action` (an unknown role may do nothing)."""
    return action in PERMISSIONS.get(role, frozenset())
