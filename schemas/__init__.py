"""Contracts every package shares: settings, queue and task names, messages, tables, the model
card and the one-line error description (decoding scans is imaging/'s)."""
