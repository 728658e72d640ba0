"""A short group-aware training on the real lung-CT slices (TRIAGE_REAL_DATA; skipped without)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.realdata


def test_short_group_aware_training_on_real_scans(tmp_path: Path) -> None:
    from schemas.model_card import read_card
    from trainer.train import run_training

    data = Path(os.environ.get("TRIAGE_REAL_DATA", ""))
    if not data.is_file():
        pytest.skip("set TRIAGE_REAL_DATA to the real lung-CT .npz")
    manifest = data.with_name(data.stem + "_manifest.csv")
    if not manifest.is_file():
        pytest.skip(f"no manifest with pseudo_case groups next to {data}")
    published = run_training(
        data,
        tmp_path / "models",
        epochs=15,
        candidates=["baseline_2conv", "ens_hog_pooled2"],  # + hog_linear, pooled2_aug
        groups=manifest,
        group_column="pseudo_case",
        patience=6,
    )
    card = read_card(published)
    assert not card.synthetic_data
    assert card.metrics["folds"] == 4  # published: 4 copies cross-fitted over train + val
    assert card.metrics["val"]["n"] + card.metrics["test"]["n"] == 719
    assert card.metrics["test"]["class_weights"] == card.class_weights  # chosen out-of-fold
    # unseen patients: the urgent flag still finds most urgent cases, and F1 beats chance
    assert card.metrics["test"]["urgent_recall"] >= 0.85
    assert card.metrics["test"]["macro_f1"] >= 0.45
