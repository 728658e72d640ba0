"""The broker: the embedded Redis and queue depths (server.py), jobs by task name (publish.py)."""
