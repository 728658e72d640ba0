"""A short run of the whole pipeline on the real lung-CT slices (TRIAGE_REAL_DATA; skipped
without): both validation designs on the card, the warnings true to the ranges, and
predictions that barely move when only the site's look changes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.realdata


def test_short_pipeline_on_real_scans(tmp_path: Path) -> None:
    from schemas.model_card import read_card
    from trainer.augment import site_variations
    from trainer.data import load_scans
    from trainer.estimate import TARGETS
    from trainer.inference import load_model, probabilities
    from trainer.train import run_training

    data = Path(os.environ.get("TRIAGE_REAL_DATA", ""))
    if not data.is_file():
        pytest.skip("set TRIAGE_REAL_DATA to the real lung-CT .npz")
    manifest = data.with_name(data.stem + "_manifest.csv")
    if not manifest.is_file():
        pytest.skip(f"no manifest with pseudo_case groups next to {data}")
    published = run_training(
        data, tmp_path / "models", epochs=2, candidates=["baseline_2conv", "hog_heads"],
        groups=manifest, group_column="pseudo_case", folds=3,
    )  # fmt: skip
    card = read_card(published)
    unseen = card.expected_unseen
    assert not card.synthetic_data and card.class_counts["all scans"] == [278, 75, 366]
    temporal = unseen.designs["temporal (earlier patients -> later)"]
    nested = unseen.designs["nested group-aware"]
    assert nested["scans"] == 719 and nested["patients"] == 82  # near-twins joined
    assert 0.25 * 82 < temporal["patients"] < 0.35 * 82  # the later 30 % of each class's
    assert temporal["scans"] < 719
    for key, bound, side in TARGETS:  # the worse design's range, warned exactly where it misses
        ranges = [design[key] for design in (nested, temporal) if design.get(key)]
        edge = min(r[side] for r in ranges) if side == "low" else max(r[side] for r in ranges)
        stated = getattr(unseen, key)
        assert stated is not None and getattr(stated, side) == edge, key
        missed = edge < bound if side == "low" else edge > bound
        assert missed == any(w.startswith(key.replace("_", " ")) for w in unseen.warnings), key
    scans = load_scans(data)
    model = load_model(published)
    plain = probabilities(model, scans.images)
    varied = probabilities(model, site_variations(scans.images, seed=0))
    flag = plain[:, 2] >= card.urgent_threshold
    moved = flag != (varied[:, 2] >= card.urgent_threshold)
    assert moved.mean() < 0.25, f"{moved.mean():.0%} of urgent flags moved with the site's look"
    assert np.abs(plain - varied).mean() < 0.2
