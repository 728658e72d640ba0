"""One line about an error, for the ledger and the logs: its type and the first line of its
message (a database error's own message, without SQL parameters), at most 300 characters."""

from __future__ import annotations


def describe(error: BaseException) -> str:
    """The error type and its first line, never a traceback or a statement's parameters."""
    detail = getattr(error, "orig", None) or error
    first_line = (str(detail).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"[:300]
