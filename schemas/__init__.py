"""Contracts shared by the trainer and the worker: settings, scan decoding, messages, tables."""
