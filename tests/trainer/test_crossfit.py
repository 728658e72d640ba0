"""Cross-fitting: every scan scored by a model that never trained on its fold."""

from __future__ import annotations

import numpy as np

from tests.trainer.fakes import intensity_scans, no_balancing, prior, reader
from trainer.crossfit import FoldFits, cross_fit, fold_of_scans


def _fits(labels: np.ndarray, groups: np.ndarray, folds: int = 4) -> FoldFits:
    return FoldFits(intensity_scans(labels), labels, fold_of_scans(labels, groups, folds, 0))


def test_out_of_fold_scores_never_come_from_a_model_that_saw_the_scan(monkeypatch) -> None:  # noqa: ANN001
    no_balancing(monkeypatch)
    labels = np.repeat([0, 1, 2, 0, 2, 1, 2, 0], 6)
    groups = np.repeat(np.arange(16), 3)
    fits = _fits(labels, groups)
    seen: list[set] = []
    fitted = cross_fit(fits, prior(seen), fits.folds)
    assert len(seen) == 4 and fitted.out_of_fold.shape == (48, 3)
    for fold, trained_on in zip(fits.folds, seen, strict=True):
        assert not trained_on & set(np.flatnonzero(fits.fold == fold).tolist())
    assert cross_fit(fits, prior(seen), fits.folds) is not None and len(seen) == 4  # cached


def test_covered_folds_leave_the_others_out_entirely(monkeypatch) -> None:  # noqa: ANN001
    no_balancing(monkeypatch)
    labels = np.repeat([0, 1, 2, 0, 2, 1, 2, 0], 6)
    fits = _fits(labels, np.repeat(np.arange(16), 3))
    seen: list[set] = []
    fitted = cross_fit(fits, prior(seen), [0, 1, 2])
    outside = set(np.flatnonzero(fits.fold == 3).tolist())
    assert all(not trained_on & outside for trained_on in seen)
    assert len(fitted.out_of_fold) == int((fits.fold != 3).sum())


def test_the_merged_model_averages_its_fold_models() -> None:
    labels = np.repeat([0, 1, 2], 8)
    fits = _fits(labels, np.arange(24), folds=2)
    fitted = cross_fit(fits, reader(), fits.folds)
    from imaging.canonical import to_model_input
    from trainer.fit import predict_proba

    predicted = predict_proba(fitted.build_model(), to_model_input(fits.images)).argmax(axis=1)
    assert (predicted == labels).all() and (fitted.out_of_fold.argmax(axis=1) == labels).all()
