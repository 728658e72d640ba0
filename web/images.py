"""The study page's key image: the most suspicious slice with its saliency overlay, as PNG.

Drawn by the same code as the key image sent to the PACS (gateway.outbox.key_image).
"""

from __future__ import annotations

import io

from PIL import Image
from sqlalchemy.engine import Engine

from gateway.outbox.key_image import render_key_image
from gateway.outbox.sending import study_report
from ledger.deliveries import report_facts
from ledger.study_views import study_id_of


def key_image_png(engine: Engine, study_uid: str) -> bytes | None:
    """PNG bytes of the study's key image, or None (no such study, not decided, no pixels)."""
    study_id = study_id_of(engine, study_uid)
    facts = report_facts(engine, study_id) if study_id else None
    if not facts or facts["p2"] is None or facts["top_pixels"] is None:
        return None
    report = study_report(facts, {"decision": facts["decisions"]})
    if report.key_image is None:
        return None
    buffer = io.BytesIO()
    Image.fromarray(render_key_image(report), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()
