"""Regenerate docs/key_image_example.png: `.venv/bin/python docs/make_key_image_example.py`.

A synthetic phantom (never a patient) with an urgent finding, its occlusion map under a toy
"model" whose P(urgent) reads only the finding's area, rendered as the key image we send to
the PACS (gateway.outbox.key_image).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from gateway.outbox.key_image import render_key_image
from gateway.outbox.report import StudyReport
from trainer.synth import make_phantoms
from worker.saliency import occlusion_map


def toy_model(batch: np.ndarray) -> np.ndarray:
    p2 = batch[:, 30:44, 42:56].astype(float).mean(axis=(1, 2)) / 255
    return np.stack([1 - p2, np.zeros_like(p2), p2], axis=1)


def main() -> None:
    images, labels = make_phantoms(40, seed=3)
    scan = images[int(np.argmax(labels == 2))]
    report = StudyReport(
        study_id="example",
        decision=1,
        study_uid="triage:example",
        accession=None,
        patient_id=None,
        p2=0.91,
        urgent=True,
        predicted=2,
        model_version="20261201-120000-ab12cd",
        decided_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        slices=4,
        key_image=scan,
        saliency=occlusion_map(toy_model, scan),
    )
    target = Path(__file__).with_name("key_image_example.png")
    Image.fromarray(render_key_image(report)).save(target, optimize=True)
    print(target)


if __name__ == "__main__":
    main()
