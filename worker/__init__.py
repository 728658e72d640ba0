"""The Celery side: `celery -A worker worker` finds `worker.app` (see worker/app.py)."""
