"""What operators read: one snapshot of queues and ledger (monitor.py), Prometheus (metrics.py)."""
