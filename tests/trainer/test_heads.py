"""The default recipe (hog_heads): one feature trunk and linear heads, every choice inside group
folds, a nested estimate on the card, a study rule with groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from schemas.model_card import read_card


@pytest.fixture(scope="module")
def grouped_phantoms() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """150 phantoms in 50 patient-like groups of 3 (each group one class)."""
    from trainer.synth import make_phantoms

    images, labels = make_phantoms(150, mix=(0.4, 0.3, 0.3), seed=21)
    order = np.argsort(labels, kind="stable")
    images, labels = images[order], labels[order]
    groups = np.array([f"p{i // 3}" for i in range(len(labels))])
    return images, labels, groups


@pytest.fixture(scope="module")
def features(grouped_phantoms):  # noqa: ANN001, ANN201
    from trainer.heads import scan_features

    return scan_features(*grouped_phantoms)


def test_the_published_model_is_the_mean_of_its_heads_and_loads_in_safe_mode(
    tmp_path: Path,
    features,  # noqa: ANN001
    grouped_phantoms,  # noqa: ANN001
) -> None:
    import keras

    from imaging.canonical import to_model_input
    from trainer.fit import predict_proba
    from trainer.heads import fit_recipe, heads_model

    recipe = fit_recipe(features, 0.9, folds=3, grid=(0.1,))
    assert len(recipe.heads) == 3 and recipe.c == 0.1
    model = heads_model(recipe.serving_heads(features.real.shape[1]))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = to_model_input(grouped_phantoms[0][:20])
    expected = recipe.probabilities(features.real[:20])
    assert predict_proba(loaded, images) == pytest.approx(expected, abs=1e-4)
    assert loaded.count_params() < 10_000  # one trunk, heads in one Dense layer


def test_mirroring_permutes_the_features(grouped_phantoms) -> None:  # noqa: ANN001
    from trainer.heads import features_of, flip_permutation

    images = grouped_phantoms[0][:8]
    plain, mirrored = features_of(images), features_of(images[:, :, ::-1].copy())
    assert mirrored == pytest.approx(plain[:, flip_permutation(plain.shape[1])], abs=1e-4)


def test_groups_sharing_a_near_identical_slice_are_joined(grouped_phantoms) -> None:  # noqa: ANN001
    from trainer.heads import merge_near_twins

    groups = grouped_phantoms[2]
    images = np.random.default_rng(0).integers(0, 256, (len(groups), 64, 64), dtype=np.uint8)
    images[10] = images[40]  # p3 and p13 share a slice: one patient
    joined = merge_near_twins(images, groups)
    assert joined[10] == joined[40] == joined[9] == joined[41] == "p13+p3"
    assert len(np.unique(joined)) == len(np.unique(groups)) - 1
    # phantoms all look alike: joining would leave one group, so the given groups stay
    assert merge_near_twins(grouped_phantoms[0], groups) is None


def test_the_estimate_falls_to_chance_when_the_scoring_folds_labels_are_noise() -> None:
    """Every outer fold's held-out labels replaced by noise: if no step of the recipe sees
    them, the pooled macro F1 is that of a guess (about 1/3); with the true labels it is far
    above. A threshold, class weight, C or head fitted on the held-out fold would lift it.
    (Scans whose brightness tells the class, 40 patients of 4 slices: clear for the linear
    heads, so a failure here is leakage, not a weak model.)"""
    from trainer.heads import deal_point, nested_predictions, scan_features

    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(40) % 3, 4)
    groups = np.repeat(np.arange(40), 4)
    level = 50 + 60 * labels + rng.integers(-15, 15, 40)[groups]  # each patient its own level
    images = np.clip(level[:, None, None] + rng.normal(0, 25, (160, 64, 64)), 0, 255)
    features = scan_features(images.astype(np.uint8), labels, groups)

    def noise(k: int, labels: np.ndarray, held: np.ndarray) -> np.ndarray:
        labels[held] = np.random.default_rng(100 + k).integers(0, 3, int(held.sum()))
        return labels

    scores = {}
    for name, relabel in (("true", None), ("noise", noise)):
        deal = nested_predictions(
            features, 0.9, seed=0, outer=5, folds=3, relabel=relabel, grid=(0.1, 1.0)
        )
        scores[name] = deal_point(deal)["macro_f1"]
    assert scores["true"] >= 0.8, scores
    assert 0.15 <= scores["noise"] <= 0.5, scores


def test_expected_unseen_is_a_range_around_the_held_out_estimate(features) -> None:  # noqa: ANN001
    from trainer.heads import nested_estimate

    unseen, deals = nested_estimate(features, 0.9, seeds=(0, 1), folds=3)
    assert len(deals) == 2 and len(unseen["per_deal"]) == 2
    for key in ("macro_f1", "urgent_recall", "urgent_precision"):
        value = unseen[key]
        assert 0 <= value["low"] <= value["estimate"] <= value["high"] <= 1, (key, value)
    assert unseen["meets_target"] == (unseen["urgent_recall"]["low"] >= 0.9)
    assert "study_recall" in unseen["per_deal"][0]


def test_default_train_with_groups_publishes_estimate_and_study_rule(
    tmp_path: Path,
    grouped_phantoms,  # noqa: ANN001
) -> None:
    from trainer.train import run_training
    from trainer.train_heads import estimate_key

    images, labels, groups = grouped_phantoms
    csv = tmp_path / "groups.csv"
    csv.write_text("case\n" + "\n".join(groups) + "\n")
    published = run_training((images, labels), tmp_path / "models", groups=csv, group_column="case")
    card = read_card(published)
    assert card.selected_candidate == "hog_heads" and card.metrics["folds"] == 4
    unseen = card.expected_unseen
    assert unseen is not None and unseen.nested and "nested" in unseen.basis
    assert unseen.macro_f1.low <= unseen.macro_f1.estimate <= unseen.macro_f1.high
    assert unseen.patients == 50
    rule = card.study_rule
    assert rule is not None and rule.top_k >= 1 and 0 <= rule.threshold <= 1
    assert rule.metrics["studies"] == 50 and 0 <= rule.metrics["study_recall"] <= 1
    assert "study_precision" in rule.metrics
    markdown = (published / "card.md").read_text()
    assert "Expected on new patients" in markdown and "Study rule" in markdown
    # decide_study works with the published rule
    assert card.decide_study(np.array([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])).top_slice == 0
    # a recorded nested estimate of the same data and recipe is reused, not recomputed
    key = estimate_key(card.data_fingerprint, True, card.urgent_target_recall, 4)
    record = {
        "data_fingerprint": card.data_fingerprint, "grouped": True, "seeds": [0, 1, 2],
        "seconds": 1.0, "basis": "nested cross-validation: a recorded one",
        "expected_unseen": {
            "macro_f1": {"estimate": 0.5, "low": 0.4, "high": 0.6},
            "urgent_recall": {"estimate": 0.9, "low": 0.8, "high": 1.0},
            "urgent_precision": {"estimate": 0.7, "low": 0.6, "high": 0.8},
            "meets_target": False, "per_deal": [{"seed": 0}],
        },
    }  # fmt: skip
    (tmp_path / "models" / key).write_text(json.dumps(record))
    again = read_card(
        run_training((images, labels), tmp_path / "models", groups=csv, group_column="case")
    )
    assert again.expected_unseen.macro_f1.estimate == 0.5
    assert "recorded by `triage estimate`" in again.expected_unseen.basis
    assert again.expected_unseen.meets_target is False


def test_default_train_without_groups_has_no_study_rule(tmp_path: Path, phantoms) -> None:  # noqa: ANN001
    from trainer.train import run_training

    images, labels = phantoms
    card = read_card(run_training((images, labels), tmp_path, epochs=1, folds=0))
    assert card.study_rule is None
    assert card.expected_unseen is not None and card.expected_unseen.patients == 336
    assert "one head" in card.published_model
    with pytest.raises(ValueError, match="alone"):
        run_training((images, labels), tmp_path, candidates=["hog_heads", "baseline_1conv"])
