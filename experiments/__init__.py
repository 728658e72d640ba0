"""Retired research, kept for the record and not maintained (see experiments/README.md)."""
