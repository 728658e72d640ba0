"""End to end on synthetic phantoms: train -> estimate -> publish -> predict / evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from schemas.model_card import read_card, resolve_model_dir
from triage.cli import app

QUICK = ["--epochs", "1", "--candidates", "baseline_1conv,hog_heads,ensemble_best", "--folds", "3"]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model root with one model trained on phantoms (patient-like groups, file numbers)."""
    from trainer.synth import write_phantoms

    folder = tmp_path_factory.mktemp("trained")
    data = write_phantoms(folder / "phantoms.npz", 180, mix=(0.5, 0.25, 0.25), seed=7)
    groups = folder / "groups.csv"
    groups.write_text(
        "case,source_file\n" + "".join(f"{i // 3},scan ({i}).png\n" for i in range(180))
    )
    root = folder / "models"
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(data), "--out", str(root), "--groups", str(groups),
         "--group-column", "case", "--seed", "1", *QUICK],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "published" in result.output and "expected on ~50 new patients" in result.output
    return root, data


def test_train_selects_by_macro_f1_and_states_both_designs(published) -> None:  # noqa: ANN001
    root, _ = published
    model_dir = resolve_model_dir(root)
    card = read_card(model_dir)
    files = {p.name for p in model_dir.iterdir()}
    assert {"model.keras", "card.json", "card.md", "confusion_out_of_fold.png"} <= files
    assert card.synthetic_data and "SYNTHETIC" in (model_dir / "card.md").read_text()
    names = [row["name"] for row in card.candidates]
    assert names == ["baseline_1conv", "hog_heads", "ensemble_best"]
    best = max(card.candidates, key=lambda row: row["macro_f1"])
    assert card.selected_candidate == best["name"] and best["selected"]
    unseen = card.expected_unseen
    assert unseen is not None and set(unseen.designs) == {
        "nested group-aware", "temporal (earlier patients -> later)",
    }  # fmt: skip
    assert unseen.design in unseen.designs and unseen.design in unseen.basis
    assert unseen.study_urgent_flagged is not None and unseen.study_healthy_flagged is not None
    assert len(unseen.designs["nested group-aware"]["winners"]) == 3  # one pipeline per fold
    assert card.reference["p_urgent_histogram"]["shares"] and card.reference["contrast"]
    assert card.class_counts["all scans"] == [90, 45, 45]
    balanced = [v for k, v in card.class_counts.items() if k.endswith("balanced")]
    assert len(balanced) == 3 and all(len(set(counts)) == 1 for counts in balanced)
    assert card.study_rule is not None


def test_a_recorded_estimate_is_reused_from_the_model_root(published, tmp_path: Path) -> None:  # noqa: ANN001
    root, data = published
    card = read_card(resolve_model_dir(root))
    record = Path(card.expected_unseen.details["record"])
    assert record.parent == root / "estimates" and json.loads(record.read_text())["designs"]
    groups = data.parent / "groups.csv"
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(data), "--out", str(root), "--groups", str(groups),
         "--group-column", "case", "--seed", "1", *QUICK],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "running both designs" not in result.output
    again = read_card(resolve_model_dir(root))
    assert again.version != card.version and again.expected_unseen == card.expected_unseen


def test_folds_zero_is_a_quick_run_without_an_estimate(tmp_path: Path, phantoms) -> None:  # noqa: ANN001
    from trainer.train import run_training

    images, labels = phantoms
    published = run_training(
        (images[:90], labels[:90]), tmp_path, epochs=1, candidates=["baseline_2conv"], folds=0
    )
    card = read_card(published)
    assert card.expected_unseen is None and card.selected_candidate == "baseline_2conv"
    assert "Not estimated" in (published / "card.md").read_text()


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
        assert [float(rows[index][f"p{k}"]) for k in range(3)] == pytest.approx(alone, abs=1e-4)
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
    root, data = published
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
    no_column = runner.invoke(app, ["train", "--data", str(data), "--groups", str(data)])
    assert no_column.exit_code == 2 and "--group-column" in no_column.output


def test_estimate_records_both_designs_where_train_finds_them(tmp_path: Path) -> None:
    from trainer.synth import write_phantoms

    data = write_phantoms(tmp_path / "scans.npz", 72, mix=(0.4, 0.3, 0.3), seed=11)
    groups = tmp_path / "groups.csv"
    groups.write_text("case,source_file\n" + "".join(f"{i // 2},s ({i}).png\n" for i in range(72)))
    options = ["--data", str(data), "--groups", str(groups), "--group-column", "case",
               "--epochs", "1", "--candidates", "baseline_1conv,hog_heads"]  # fmt: skip
    runner = CliRunner()
    too_few = runner.invoke(app, ["estimate", *options, "--folds", "2", "--out", str(tmp_path)])
    assert too_few.exit_code == 2 and "at least 3" in too_few.output
    result = runner.invoke(app, ["estimate", *options, "--out", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert "nested group-aware: winners" in result.output and "recorded" in result.output
    trained = runner.invoke(app, ["train", *options, "--out", str(tmp_path / "models")])
    assert trained.exit_code == 0, trained.output
    assert "running both designs" not in trained.output
