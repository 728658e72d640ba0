"""The `render_key_image` task: the saliency map of an urgent study's key image.

Run by the model workers (routed to the `stat` queue, served before routine classification):
`classify` publishes one job per urgent study it decided, and the reconciler one per study
whose key image has waited a reconcile period (the job was lost, its worker died, or the
reconciler decided the study where no model runs). The job computes the occlusion saliency
of the study's most suspicious slice (worker/saliency.py, one batched forward pass), stores
it, which makes the study's waiting key-image deliveries due in the same transaction, and
publishes those. Idempotent: a study whose map is stored only has its due rows re-published.
"""

from __future__ import annotations

import logging

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.broker.publish import publish_deliveries
from imaging.canonical import SCAN_SIZE
from ledger import deliveries, studies
from ledger.database import engine_for
from ledger.scans import SCAN_BYTES
from ledger.statements import scan_pixels
from schemas.errors import describe
from schemas.queues import RENDER_KEY_IMAGE_TASK
from schemas.settings import get_settings
from worker.app import app
from worker.model import ServingModel, current_model
from worker.saliency import occlusion_map
from worker.tasks import RETRYABLE, TransientError, backoff

log = logging.getLogger(__name__)

NO_PIXELS = "the most suspicious slice has no usable pixels: no key image can be rendered"


def render_saliency(engine: Engine, model: ServingModel, study_id: str) -> list[str]:
    """Store the saliency map of the study's top slice unless it is stored (or the study is
    no longer urgent); returns the study's key-image deliveries due now."""
    study = studies.study_row(engine, study_id)
    if study is None or not study["urgent"] or study["top_scan_id"] is None:
        return []
    if study["saliency"] is None:
        top_scan = str(study["top_scan_id"])
        raw = _pixels(engine, top_scan)
        if raw is None or len(raw) != SCAN_BYTES:
            deliveries.fail_waiting(engine, study_id, NO_PIXELS)
            log.error("study %s: %s", study_id, NO_PIXELS)
            return []
        studies.store_saliency(engine, study_id, top_scan, saliency_bytes(model, raw))
    return deliveries.key_images_due(engine, study_id)


def saliency_bytes(model: ServingModel, raw: bytes) -> bytes:
    """Occlusion saliency of one canonical slice, kept as 64x64 uint8."""
    scan = np.frombuffer(raw, np.uint8).reshape(SCAN_SIZE, SCAN_SIZE)
    saliency = occlusion_map(model.probabilities, scan)
    return np.clip(np.rint(saliency * 255), 0, 255).astype(np.uint8).tobytes()


def _pixels(engine: Engine, scan_id: str) -> bytes | None:
    with engine.begin() as connection:
        query = sa.select(scan_pixels.c.pixels).where(scan_pixels.c.scan_id == scan_id)
        return connection.execute(query).scalar()


@app.task(name=RENDER_KEY_IMAGE_TASK, bind=True, max_retries=None)
def render_key_image(self, study_id: str) -> int:  # noqa: ANN001 - bound Celery task
    """Render one urgent study's key-image saliency and send its key image; returns how many
    deliveries it published. Outages are retried with backoff `max_attempts` times; after
    that the key image waits and the reconciler publishes this job again."""
    settings = get_settings()
    try:
        engine = engine_for(settings.resolved_database_url)
        due = render_saliency(engine, current_model(settings), study_id)
        publish_deliveries(due, settings)
    except RETRYABLE as error:
        reason = describe(error)
        if self.request.retries >= settings.max_attempts:
            log.error("key image of study %s: %s; left waiting", study_id, reason)
            return 0
        log.warning("key image of study %s: %s; retrying", study_id, reason)
        raise self.retry(
            exc=TransientError(reason), countdown=backoff(self.request.retries)
        ) from None
    return len(due)
