"""The Celery side: `celery -A worker worker` finds `worker.app` (see worker/app.py)."""

from worker.app import app

__all__ = ["app"]
