"""The pipeline selects by out-of-fold macro F1 and chooses on the winner's scores."""

from __future__ import annotations

import numpy as np

from tests.trainer.fakes import intensity_scans, no_balancing, prior, reader
from trainer.crossfit import FoldFits, fold_of_scans
from trainer.pipeline import run_pipeline


def test_the_candidate_with_the_best_macro_f1_wins(monkeypatch) -> None:  # noqa: ANN001
    no_balancing(monkeypatch)
    labels = np.repeat([0, 1, 2, 2, 0, 1], 5)
    groups = np.repeat(np.arange(15), 2)
    fits = FoldFits(intensity_scans(labels), labels, fold_of_scans(labels, groups, 3, 0))
    outcome = run_pipeline(fits, [prior(), reader()], True, fits.folds, groups, groups, 0.95)
    names = [row["name"] for row in outcome.rows]
    assert names == ["prior", "reader", "ensemble_best"]
    assert outcome.selected.name == "reader"
    best = max(outcome.rows, key=lambda row: row["macro_f1"])
    assert best["selected"] and best["macro_f1"] == 1.0
    assert outcome.choices.threshold > 0.5  # the reader's urgent scores sit near 1
    assert all({"urgent_recall", "urgent_precision"} <= row.keys() for row in outcome.rows)
