"""The fixed-feature candidate: heads merged into one model that loads in safe mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_merged_heads_are_the_mean_of_the_fold_models_and_load_safely(
    tmp_path: Path,
    phantoms,  # noqa: ANN001
) -> None:
    import keras

    from imaging.canonical import to_model_input
    from trainer.fit import predict_proba
    from trainer.hog_heads import fit_hog_heads, merge_heads

    images, labels = phantoms
    folds = [fit_hog_heads(images[k::2], labels[k::2], seed=k) for k in range(2)]
    merged = merge_heads(folds, "hog_heads_x2")
    path = tmp_path / "model.keras"
    merged.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = to_model_input(images[:20])
    expected = np.mean([predict_proba(m, x) for m in folds], axis=0)
    assert predict_proba(loaded, x) == pytest.approx(expected, abs=1e-4)
    assert loaded.count_params() < 10_000  # one trunk, heads in one Dense layer
    accuracy = (predict_proba(loaded, to_model_input(images)).argmax(1) == labels).mean()
    assert accuracy > 0.5  # it learned something from the phantoms


def test_predictions_barely_move_when_only_the_sites_look_changes(phantoms) -> None:  # noqa: ANN001
    from imaging.canonical import to_model_input
    from trainer.augment import site_variations
    from trainer.fit import predict_proba
    from trainer.hog_heads import fit_hog_heads

    images, labels = phantoms
    model = fit_hog_heads(images[:160], labels[:160], seed=0)
    plain = predict_proba(model, to_model_input(images[160:]))
    varied = predict_proba(model, to_model_input(site_variations(images[160:], seed=1)))
    truth = labels[160:]
    drop = (plain.argmax(1) == truth).mean() - (varied.argmax(1) == truth).mean()
    assert drop < 0.15, f"accuracy fell by {drop:.2f} under another site's look"
    assert np.abs(plain - varied).mean() < 0.25
