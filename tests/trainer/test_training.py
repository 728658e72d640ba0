"""End to end on synthetic phantoms: train -> publish -> predict / evaluate (a few epochs)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from schemas.model_card import read_card, resolve_model_dir
from triage.cli import app

QUICK = ["--epochs", "2", "--candidates", "baseline_1conv,baseline_2conv", "--folds", "2"]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model root with one model trained on phantoms (with patient-like groups)."""
    from trainer.synth import write_phantoms

    folder = tmp_path_factory.mktemp("trained")
    data = write_phantoms(folder / "phantoms.npz", 300, mix=(0.5, 0.25, 0.25), seed=7)
    groups = folder / "groups.csv"
    groups.write_text("case\n" + "\n".join(str(i // 3) for i in range(300)) + "\n")
    root = folder / "models"
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(data), "--out", str(root), "--groups", str(groups),
         "--group-column", "case", "--seed", "1", *QUICK],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "baseline_2conv" in result.output and "published" in result.output
    return root, data


def test_train_publishes_a_complete_model_directory(published) -> None:  # noqa: ANN001
    root, _ = published
    model_dir = resolve_model_dir(root)
    card = read_card(model_dir)
    names = {path.name for path in model_dir.iterdir()}
    assert {"model.keras", "card.json", "card.md"} <= names
    published_name = f"{card.selected_candidate}_x2"
    for name in ("baseline_1conv", "baseline_2conv", published_name):
        assert {f"curves_{name}.png", f"confusion_{name}.png"} <= names
    assert card.synthetic_data and "SYNTHETIC" in (model_dir / "card.md").read_text()
    assert card.class_counts["train (balanced)"] == [max(card.class_counts["train"])] * 3
    assert card.class_counts["val"] != card.class_counts["train (balanced)"]
    assert len(card.data_fingerprint) == 64 and card.library_versions["keras"]
    assert [row["name"] for row in card.candidates] == ["baseline_1conv", "baseline_2conv"]
    assert (
        card.selected_candidate == max(card.candidates, key=lambda r: r["val"]["macro_f1"])["name"]
    )
    # the published model: two cross-fitted copies, threshold from their out-of-fold scores
    assert card.metrics["folds"] == 2 and "2 copies" in card.published_model
    assert card.metrics["val"]["n"] == sum(card.class_counts["train"] + card.class_counts["val"])
    # the urgent flag on scans its threshold never saw (the test split's patients)
    assert card.metrics["test"]["n"] == sum(card.class_counts["test"])
    assert card.metrics["test"]["urgent_recall"] >= 0.8, card.metrics["test"]
    # the predicted class's weights were chosen on the out-of-fold scores, reported with them
    assert card.class_weights[0] == card.class_weights[2] == 1.0
    assert card.metrics["val"]["class_weights"] == card.metrics["test"]["class_weights"]
    assert card.metrics["val"]["class_weights"] == card.class_weights
    # named CNN candidates: a study rule from the out-of-fold studies, and a range for new
    # patients from the test split (not nested, and the card says so)
    assert card.study_rule is not None and card.study_rule.metrics["studies"] >= 2
    unseen = card.expected_unseen
    assert unseen is not None and not unseen.nested and "NOT nested" in unseen.basis
    assert unseen.urgent_recall.low <= unseen.urgent_recall.estimate <= unseen.urgent_recall.high


def test_train_without_cross_fit_publishes_the_selected_candidate(tmp_path: Path, phantoms) -> None:  # noqa: ANN001
    from trainer.train import run_training

    images, labels = phantoms
    published = run_training(
        (images, labels), tmp_path, epochs=1, candidates=["baseline_1conv"], folds=0
    )
    card = read_card(published)
    assert card.metrics["folds"] == 0
    assert card.study_rule is None  # no groups, no studies
    # the candidate as trained, its threshold; the predicted class weighed as chosen on val
    assert card.metrics["val"]["class_weights"] == card.class_weights
    assert card.metrics["val"]["threshold"] == card.candidates[0]["val"]["threshold"]
    assert card.metrics["val"]["n"] == card.candidates[0]["val"]["n"]
    assert card.metrics["test"]["urgent_recall"] >= 0.8, card.metrics["test"]
    with pytest.raises(ValueError, match="--folds"):
        run_training((images, labels), tmp_path, epochs=1, candidates=["baseline_1conv"], folds=1)


def test_an_ensembles_members_are_reported_but_only_named_candidates_compete(
    tmp_path: Path,
    phantoms,  # noqa: ANN001
) -> None:
    from trainer.train import run_training

    images, labels = phantoms
    published = run_training(
        (images, labels), tmp_path, epochs=2, candidates=["ens_hog_pooled2"], folds=0
    )
    card = read_card(published)
    rows = {row["name"]: row for row in card.candidates}
    assert list(rows) == ["hog_linear", "pooled2_aug", "ens_hog_pooled2"]
    assert [row["competes"] for row in rows.values()] == [False, False, True]
    assert (
        card.selected_candidate == "ens_hog_pooled2"
    )  # the only named one, whatever members score
    assert "(ensemble member)" in (published / "card.md").read_text()
    members = [rows[name]["test"] for name in ("hog_linear", "pooled2_aug")]
    assert rows["ens_hog_pooled2"]["test"]["n"] == members[0]["n"] == members[1]["n"]


def test_predict_rows_line_up_with_the_input(published, tmp_path: Path) -> None:  # noqa: ANN001
    from trainer.inference import load_model, probabilities

    root, data = published
    with np.load(data) as archive:
        images = archive["images"][::-1][:37].copy()  # another order, no labels
    np.save(tmp_path / "scans.npy", images)
    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(
        app,
        ["predict", "--model", str(root), "--data", str(tmp_path / "scans.npy"), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [int(row["index"]) for row in rows] == list(range(37))
    loaded = load_model(root)
    for index in (0, 17, 36):  # each row is its own image, scored alone
        alone = probabilities(loaded, images[index : index + 1])[0]
        assert [float(rows[index][f"p{k}"]) for k in range(3)] == pytest.approx(alone, abs=1e-5)
        weighed = alone * np.asarray(loaded.card.class_weights)
        assert int(rows[index]["predicted"]) == int(weighed.argmax())
        assert int(rows[index]["urgent"]) == int(alone[2] >= loaded.card.urgent_threshold)


def test_predict_sorts_by_the_cards_class_weights(published, tmp_path: Path) -> None:  # noqa: ANN001
    """The same model with a card that weighs class 1 by 1000 predicts class 1 wherever
    P(class 1) > P(other) / 1000; the urgent column is unchanged."""
    import shutil

    from schemas.model_card import write_card

    root, data = published
    copy = tmp_path / "weighted"
    shutil.copytree(resolve_model_dir(root), copy)
    card = read_card(copy)
    write_card(copy, card.model_copy(update={"class_weights": [1.0, 1000.0, 1.0]}))
    outputs = {}
    for name, model in (("plain", root), ("weighted", copy)):
        out = tmp_path / f"{name}.csv"
        result = CliRunner().invoke(
            app, ["predict", "--model", str(model), "--data", str(data), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        outputs[name] = list(csv.DictReader(out.open()))
    for plain, weighted in zip(outputs["plain"], outputs["weighted"], strict=True):
        p = [float(plain[f"p{k}"]) for k in range(3)]
        expected = 1 if 1000 * p[1] > max(p[0], p[2]) else int(np.argmax(p))
        assert int(weighted["predicted"]) == expected and weighted["urgent"] == plain["urgent"]
    assert sum(row["predicted"] == "1" for row in outputs["weighted"]) > sum(
        row["predicted"] == "1" for row in outputs["plain"]
    )


def test_evaluate_reports_on_labelled_data(published) -> None:  # noqa: ANN001
    root, data = published
    result = CliRunner().invoke(app, ["evaluate", "--model", str(root), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "macro avg" in result.output and "Confusion matrix" in result.output
    weights = str(read_card(resolve_model_dir(root)).class_weights)
    assert f"predicted class: argmax of P x {weights}" in " ".join(result.output.split())


def test_commands_refuse_bad_input_with_clear_errors(published, tmp_path: Path) -> None:  # noqa: ANN001
    root, _ = published
    runner = CliRunner()
    missing = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--data", "x.npz"])
    assert missing.exit_code == 2 and "no published model" in missing.output
    bad = tmp_path / "bad.npz"
    noise = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    np.savez(bad, images=noise, labels=np.array([0, 5, 1]))
    refused = runner.invoke(app, ["train", "--data", str(bad), "--out", str(tmp_path), *QUICK])
    assert refused.exit_code == 2 and "labels must be 0, 1 or 2" in refused.output
    unknown = runner.invoke(app, ["train", "--data", str(bad), "--candidates", "nope"])
    assert unknown.exit_code == 2 and "unknown candidate" in unknown.output


def test_selection_and_threshold_ignore_the_test_split(tmp_path: Path) -> None:
    """Same train/val, wildly different test split: same selection, cross-fit, threshold and
    validation metrics."""
    import tensorflow as tf

    from trainer.synth import make_phantoms
    from trainer.train import run_training

    tf.config.experimental.enable_op_determinism()
    images, labels = make_phantoms(260, mix=(0.5, 0.25, 0.25), seed=11)
    noise = np.random.default_rng(0).integers(0, 256, (60, 64, 64), dtype=np.uint8)
    cards = []
    for name, test_images, test_labels in (
        ("real", images[200:], labels[200:]),
        ("noise", noise, np.random.default_rng(1).integers(0, 3, 60)),
    ):
        path = tmp_path / f"{name}.npz"
        np.savez(
            path,
            train_images=images[:140], train_labels=labels[:140],
            val_images=images[140:200], val_labels=labels[140:200],
            test_images=test_images, test_labels=test_labels,
        )  # fmt: skip
        published = run_training(
            path,
            tmp_path / name,
            epochs=2,
            seed=3,
            candidates=["baseline_1conv", "baseline_2conv"],
            folds=2,
        )
        cards.append(json.loads((published / "card.json").read_text()))
    real, scrambled = cards
    assert real["selected_candidate"] == scrambled["selected_candidate"]
    assert real["urgent_threshold"] == scrambled["urgent_threshold"]
    assert [r["val"] for r in real["candidates"]] == [r["val"] for r in scrambled["candidates"]]
    assert [r["test"] for r in real["candidates"]] != [r["test"] for r in scrambled["candidates"]]
    assert real["metrics"]["val"] == scrambled["metrics"]["val"]  # out-of-fold, train + val only
    assert real["metrics"]["test"] != scrambled["metrics"]["test"]
