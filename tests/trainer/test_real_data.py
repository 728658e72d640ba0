"""Group-aware training on the real lung-CT slices (TRIAGE_REAL_DATA; skipped without): the
default recipe through `triage train` as a user runs it, and a short run of CNN candidates."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.realdata
REAL_SCANS = 719


def real_data() -> tuple[Path, Path]:
    """The real .npz and its manifest with pseudo_case groups, or skip."""
    data = Path(os.environ.get("TRIAGE_REAL_DATA", ""))
    if not data.is_file():
        pytest.skip("set TRIAGE_REAL_DATA to the real lung-CT .npz")
    manifest = data.with_name(data.stem + "_manifest.csv")
    if not manifest.is_file():
        pytest.skip(f"no manifest with pseudo_case groups next to {data}")
    return data, manifest


def test_triage_train_publishes_the_default_recipe_on_real_scans(tmp_path: Path) -> None:
    """`triage train` with no --candidates: the default recipe, its nested estimate on the card,
    and a published model that `triage predict` serves with the card's urgent flag."""
    from schemas.model_card import read_card, resolve_model_dir
    from triage.cli import app

    data, manifest = real_data()
    runner = CliRunner()
    trained = runner.invoke(
        app,
        ["train", "--data", str(data), "--groups", str(manifest), "--group-column", "pseudo_case"]
        + ["--out", str(tmp_path / "models")],
    )
    assert trained.exit_code == 0, trained.output
    published = resolve_model_dir(tmp_path / "models")
    card = read_card(published)
    assert card.selected_candidate == "hog_heads" and not card.synthetic_data
    assert sum(card.class_counts["all"]) == REAL_SCANS
    unseen = card.expected_unseen
    assert unseen is not None and unseen.nested and unseen.unit == "patients"
    # new patients: the urgent flag still finds most urgent cases, and F1 beats chance
    assert unseen.urgent_recall.estimate >= 0.85 and unseen.macro_f1.estimate >= 0.45
    out_of_fold = card.metrics["val"]  # this run's own scores, every scan held out once
    assert out_of_fold["n"] == REAL_SCANS
    assert out_of_fold["urgent_recall"] >= 0.85 and out_of_fold["macro_f1"] >= 0.45

    predictions = tmp_path / "predictions.csv"
    served = runner.invoke(
        app, ["predict", "--model", str(published), "--data", str(data), "--out", str(predictions)]
    )
    assert served.exit_code == 0, served.output
    with predictions.open() as handle:
        rows = list(csv.DictReader(handle))
    labels = np.load(data)["labels"]
    flagged = np.array([row["urgent"] == "1" for row in rows])
    p2 = np.array([float(row["p2"]) for row in rows])
    assert len(rows) == REAL_SCANS
    clear = np.abs(p2 - card.urgent_threshold) > 1e-5  # the CSV rounds P(2) to 6 places
    assert np.array_equal(flagged[clear], (p2 >= card.urgent_threshold)[clear])  # card's rule
    assert flagged[labels == 2].mean() >= 0.85


def test_short_group_aware_training_of_cnn_candidates_on_real_scans(tmp_path: Path) -> None:
    from schemas.model_card import read_card
    from trainer.train import run_training

    data, manifest = real_data()
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
    assert card.metrics["val"]["n"] + card.metrics["test"]["n"] == REAL_SCANS
    assert card.metrics["test"]["class_weights"] == card.class_weights  # chosen out-of-fold
    # unseen patients: the urgent flag still finds most urgent cases, and F1 beats chance
    assert card.metrics["test"]["urgent_recall"] >= 0.85
    assert card.metrics["test"]["macro_f1"] >= 0.45
