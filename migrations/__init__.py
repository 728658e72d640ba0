"""Alembic migrations for the ledger (`triage db upgrade` or `alembic upgrade head`)."""
