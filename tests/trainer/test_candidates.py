"""Candidate selection and architecture ensembles (built from trained members, not retrained)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.candidates import CANDIDATES, select_candidates


def test_every_candidate_maps_scans_to_a_softmax() -> None:
    images = np.random.default_rng(0).random((4, 64, 64, 1), dtype=np.float32)
    for candidate in CANDIDATES.values():
        if candidate.combines or candidate.fitted_heads:  # hog_heads: tests/trainer/test_heads.py
            continue
        output = np.asarray(candidate.build()(images, training=False))
        assert output.shape == (4, 3), candidate.name
        assert output.sum(axis=1) == pytest.approx(np.ones(4), abs=1e-5), candidate.name


def test_an_ensemble_brings_its_members_once_and_first() -> None:
    ensembles = [c for c in CANDIDATES.values() if c.combines]
    assert ensembles, "expected at least one architecture ensemble"
    ensemble = ensembles[0]
    names = [c.name for c in select_candidates([ensemble.name, ensemble.combines[0]])]
    assert names[-1] == ensemble.name
    assert sorted(names[:-1]) == sorted(ensemble.combines)
    # the default is the hog_heads recipe alone (its choices are made inside group folds)
    assert [c.name for c in select_candidates(None)] == ["hog_heads"]
    assert CANDIDATES["hog_heads"].fitted_heads


def test_combined_model_is_the_mean_softmax_of_its_members() -> None:
    from trainer.fit import FitResult, combine_results, predict_proba

    ensemble = next(c for c in CANDIDATES.values() if c.combines)
    members = [FitResult(CANDIDATES[name].build(), [{"loss": [1.0]}]) for name in ensemble.combines]
    images = np.random.default_rng(1).random((5, 64, 64, 1), dtype=np.float32)
    expected = np.mean([predict_proba(m.model, images) for m in members], axis=0)
    combined = combine_results(ensemble, members)
    assert predict_proba(combined.model, images) == pytest.approx(expected, abs=1e-6)
    assert len(combined.histories) == len(members)


def test_without_validation_a_fit_runs_exactly_the_given_epochs(phantoms) -> None:  # noqa: ANN001
    from imaging.canonical import to_model_input
    from trainer.fit import fit_candidate

    images, labels = phantoms[0][:64], phantoms[1][:64]
    result = fit_candidate(
        CANDIDATES["baseline_1conv"], (to_model_input(images), labels), None, 3, 0
    )
    (history,) = result.histories
    assert len(history["loss"]) == 3 and "val_loss" not in history


def _hog_features(images: np.ndarray) -> np.ndarray:
    """The fixed features of hog_linear (before its trained head) for float (N, 64, 64) scans."""
    import keras

    model = CANDIDATES["hog_linear"].build()
    features = keras.Model(model.input, model.get_layer("features").output)
    return np.asarray(features(images[..., None].astype(np.float32)))


def test_hog_features_read_edge_direction_blank_cells_and_intensity() -> None:
    from trainer.candidates import HOG_ORIENTATIONS, INTENSITY_BINS

    edge = np.zeros((64, 64), np.float32)
    edge[:, 36:60] = 0.5  # vertical edges (a left-right gradient) at x = 36 and x = 60
    blank = np.zeros((64, 64), np.float32)
    features = _hog_features(np.stack([edge, blank]))
    per_cell = HOG_ORIENTATIONS + 1  # 9 directions and the blank floor
    assert features.shape == (2, 8 * 8 * per_cell + INTENSITY_BINS)
    cells = features[:, : 8 * 8 * per_cell].reshape(2, 8, 8, per_cell)

    edge_cell = cells[0, 4, 4]  # rows 32-39, columns 32-39: holds the edge at x = 36
    assert np.linalg.norm(edge_cell) == pytest.approx(1.0, abs=1e-4)
    assert np.argmax(edge_cell) == 0  # direction 0 degrees: d/dx
    angles = np.arange(HOG_ORIENTATIONS) * np.pi / HOG_ORIENTATIONS  # cosine-tuned directions
    np.testing.assert_allclose(edge_cell[:-1] / edge_cell[0], np.abs(np.cos(angles)), atol=1e-4)
    inside = cells[0, 4, 5]  # columns 40-47: flat grey, no edge
    assert inside[-1] == pytest.approx(1.0, abs=1e-4) and inside[:-1].max() < 1e-3
    assert np.allclose(cells[1, ..., -1], 1.0, atol=1e-4)  # a black scan is blank everywhere
    assert np.allclose(cells[1, ..., :-1], 0.0, atol=1e-6)

    histogram = features[:, -INTENSITY_BINS:]
    grey_bin = int(0.5 * INTENSITY_BINS)  # 0.5 lies between bins 15 and 16, on both triangles
    assert histogram[0, grey_bin - 1] + histogram[0, grey_bin] == pytest.approx(24 / 64, abs=1e-3)
    assert histogram[1, 1:].max() == 0 and histogram[1, 0] > 0  # black only in the first bin


def test_hog_linear_trains_only_its_head_on_the_unbalanced_split(phantoms) -> None:  # noqa: ANN001
    from imaging.canonical import to_model_input
    from trainer.fit import fit_candidate, inverse_share_weights

    candidate = CANDIDATES["hog_linear"]
    images, labels = to_model_input(phantoms[0][:60]), phantoms[1][:60]
    with pytest.raises(ValueError, match="hog_linear"):
        fit_candidate(candidate, (images, labels), None, 1, 0)
    fixed = {
        layer.name: [w.copy() for w in layer.get_weights()]
        for layer in candidate.build().layers
        if layer.weights and not layer.trainable
    }
    assert {"oriented_derivatives", "unsigned_magnitudes", "bin_triangles"} <= set(fixed)
    balanced = (np.zeros((3, 64, 64, 1), np.float32), np.arange(3))  # must not be used
    result = fit_candidate(candidate, balanced, None, 2, 0, original=(images, labels))
    trained = {layer.name: layer for layer in result.model.layers}
    for name, weights in fixed.items():
        for before, after in zip(weights, trained[name].get_weights(), strict=True):
            np.testing.assert_array_equal(before, after)
    assert result.model.get_layer("head").get_weights()[0].any()
    weights = inverse_share_weights(np.array([0, 0, 0, 1, 2, 2]))
    assert weights == pytest.approx({0: 6 / 9, 1: 2.0, 2: 1.0})


def test_every_candidate_saves_and_loads_with_builtin_layers_only(tmp_path) -> None:  # noqa: ANN001
    import keras

    images = np.random.default_rng(2).random((3, 64, 64, 1), dtype=np.float32)
    for candidate in CANDIDATES.values():
        if candidate.combines or candidate.fitted_heads:  # hog_heads: tests/trainer/test_heads.py
            continue
        model = candidate.build()
        path = tmp_path / f"{candidate.name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(
            np.asarray(loaded(images, training=False)),
            np.asarray(model(images, training=False)),
            atol=1e-6,
            err_msg=candidate.name,
        )


def test_bars_only_batches_blank_equal_top_and_bottom_rows_and_nothing_else() -> None:
    from trainer.augment import MAX_BAR_ROWS
    from trainer.fit import _training_batches

    images = np.full((200, 64, 64, 1), 0.5, np.float32)
    labels = np.arange(200) % 3
    batches = list(_training_batches((images, labels), "bars", seed=3))
    seen = np.concatenate([np.asarray(x) for x, _ in batches])
    assert len(seen) == 200
    blank_rows = (seen[..., 0] == 0).all(axis=2)  # (N, 64): which rows went black
    top, bottom = blank_rows[:, :32].sum(1), blank_rows[:, 32:].sum(1)
    np.testing.assert_array_equal(top, bottom)  # symmetric bands
    assert 0 < (top > 0).sum() < 100 and top.max() <= MAX_BAR_ROWS  # some scans, not most
    untouched = ~blank_rows
    assert np.all(seen[..., 0][untouched] == 0.5)  # no geometry, no gain: only the bars
    with pytest.raises(ValueError, match="unknown augmentation"):
        _training_batches((images, labels), "sideways", seed=3)
