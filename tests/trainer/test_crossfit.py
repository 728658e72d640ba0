"""Cross-fitting: folds keep patients apart, and each image is scored by the copy that never saw it."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.crossfit import cross_fit, fold_of_images
from trainer.data import DataError


def test_folds_keep_groups_together_and_cover_every_class() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(rng.choice(3, 60, p=[0.5, 0.2, 0.3]), 4)  # 60 patients of 4 slices
    groups = np.repeat(np.arange(60), 4).astype(str)
    fold = fold_of_images(labels, groups, 4, seed=2)
    for group in np.unique(groups):
        assert len(set(fold[groups == group])) == 1
    for index in range(4):
        assert set(labels[fold == index]) == {0, 1, 2}
        assert abs((fold == index).mean() - 0.25) < 0.08
    assert not np.array_equal(fold, fold_of_images(labels, groups, 4, seed=3))


def test_folds_without_groups_are_stratified() -> None:
    labels = np.array([0] * 40 + [1] * 12 + [2] * 8)
    fold = fold_of_images(labels, None, 4, seed=0)
    for index in range(4):
        assert np.bincount(labels[fold == index], minlength=3).tolist() == [10, 3, 2]


def test_folds_refuse_too_few_groups_or_folds() -> None:
    labels = np.array([0, 1, 2] * 4)
    with pytest.raises(DataError, match="at least 4 patient groups"):
        fold_of_images(labels, np.array(["a", "b", "c"] * 4), 4, seed=0)
    with pytest.raises(ValueError, match="at least 2 folds"):
        fold_of_images(labels, None, 1, seed=0)


def test_out_of_fold_scores_come_from_the_copy_that_did_not_train_on_the_image(phantoms) -> None:
    from imaging.canonical import to_model_input
    from trainer.candidates import CANDIDATES
    from trainer.fit import predict_proba

    images, labels = phantoms[0][:120], phantoms[1][:120]
    groups = (np.arange(120) // 3).astype(str)
    result = cross_fit(
        [CANDIDATES["baseline_1conv"]], "baseline_1conv", images, labels, groups, 2, 1, seed=4
    )
    fold = fold_of_images(labels, groups, 2, seed=4)
    members = [result.model.get_layer(f"baseline_1conv_fold{k}") for k in (1, 2)]
    member_scores = [predict_proba(member, to_model_input(images)) for member in members]
    for index in range(2):
        held_out = fold == index
        assert np.allclose(result.out_of_fold[held_out], member_scores[index][held_out], atol=1e-5)
        assert not np.allclose(result.out_of_fold[held_out], member_scores[1 - index][held_out])
    averaged = predict_proba(result.model, to_model_input(images))
    assert np.allclose(averaged, np.mean(member_scores, axis=0), atol=1e-5)
    assert result.folds == 2 and len(result.histories) == 2
